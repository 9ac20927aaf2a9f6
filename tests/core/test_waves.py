"""Wave planning over many generated fleets, its params, and the halt decision."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from fractions import Fraction

import pandas as pd
import pytest

from patchcycle.core.quantities import CountOrPercent
from patchcycle.core.waves import WAVE_PLAN_COLUMNS, halt_decision, plan_waves

CONFIGS: list[tuple[str, list[int]]] = [
    ("5%", [25, 25, 50]),
    ("1", [50, 50]),
    ("2", [10, 40, 50]),
    ("10%", [30, 70]),
    ("3", [20, 20, 20, 40]),
    ("1", [0, 100]),
    ("20%", [100]),
]
RULE_KEYS = (("account_id", "region", "patch_group"), ("account_id", "availability_zone"))


def fleet(rng: random.Random, size: int, groups: int, zones: int, accounts: int = 1) -> pd.DataFrame:
    """`size` production instances spread at random over patch groups, zones and accounts."""
    rows = []
    for number in range(size):
        account = f"{111111111111 * (1 + rng.randrange(accounts))}"
        region = rng.choice(["us-east-1", "eu-west-1"])
        rows.append(
            {
                "account_id": account,
                "region": region,
                "resource_id": f"i-{number:017x}",
                "patch_group": rng.choice([f"g{index}" for index in range(groups)] + [""]),
                "availability_zone": f"{region}{'abc'[rng.randrange(zones)]}",
                "profile_id": f"p{rng.randrange(1, 4):02d}",
            }
        )
    return pd.DataFrame(rows)


def expected_sizes(total: int, canary: str, percentages: Sequence[int]) -> list[int]:
    """Wave sizes from the contract, computed independently of the planner's internals."""
    count = math.ceil(int(canary[:-1]) * total / 100) if canary.endswith("%") else int(canary)
    first = min(max(1, count), total - 1) if total >= 2 else total
    rest = total - first
    exact = [Fraction(p * rest, 100) for p in percentages]
    sizes = [math.floor(value) for value in exact]
    order = sorted(range(len(exact)), key=lambda i: (sizes[i] - exact[i], i))
    for i in order[: rest - sum(sizes)]:
        sizes[i] += 1
    return [size for size in [first, *sizes] if size]


def whole_groups(plan: pd.DataFrame) -> list[tuple[str, ...]]:
    """Patch groups and zones of two or more that a single wave takes whole."""
    found = []
    for keys in RULE_KEYS:
        for key, members in plan.groupby(list(keys)):
            if len(members) >= 2 and members["wave"].nunique() == 1:
                found.append(tuple(map(str, key)))
    return found


def feasible(production: pd.DataFrame, sizes: Sequence[int]) -> bool:
    """Brute force: can instances fill waves of these sizes with no patch group or zone whole in one?"""
    parts = [
        list(members.index) for keys in RULE_KEYS for _, members in production.groupby(list(keys)) if len(members) >= 2
    ]

    def fill(left: list[int], wave: int, assigned: dict[int, int]) -> bool:
        if wave == len(sizes):
            return all(len({assigned[i] for i in part}) >= 2 for part in parts)
        for chosen in itertools.combinations(left, sizes[wave]):
            if fill([i for i in left if i not in chosen], wave + 1, {**assigned, **dict.fromkeys(chosen, wave)}):
                return True
        return False

    return fill(list(production.index), 0, {})


def share(text: str) -> CountOrPercent:
    """A canary or halt threshold as the run's config holds it (0 allowed: plan_waves must refuse a 0 canary)."""
    return CountOrPercent.parse("share", text, minimum=0)


def big_parts(production: pd.DataFrame) -> tuple[int, int]:
    """How many patch groups and zones have two instances or more."""
    groups, zones = (int((production.groupby(list(keys)).size() >= 2).sum()) for keys in RULE_KEYS)
    return groups, zones


@pytest.mark.slow  # about 8 s for the eight fleets
@pytest.mark.parametrize("seed", range(8))
def test_generated_fleets_keep_every_wave_property(seed: int) -> None:
    rng = random.Random(seed)
    planned = 0
    for _ in range(25):
        production = fleet(rng, rng.randint(1, 300), rng.randint(1, 12), rng.randint(1, 3), rng.randint(1, 2))
        canary, percentages = rng.choice(CONFIGS)
        sizes = expected_sizes(len(production), canary, percentages)
        try:
            plan = plan_waves(production, share(canary), percentages, 5)
        except ValueError as error:
            # Refused only when the waves before the last cannot touch every group (one instance touches
            # at most one patch group and one zone), and the message names the params to change.
            assert str(error).startswith("canary, wave_percentages:")
            assert sum(sizes[:-1]) < max(big_parts(production))
            continue
        planned += 1
        assert list(plan.columns) == list(WAVE_PLAN_COLUMNS)
        assert {n: str(d) for n, d in plan.dtypes.items()} == dict(WAVE_PLAN_COLUMNS)
        assert sorted(plan["resource_id"]) == sorted(production["resource_id"])  # every instance exactly once
        waves = plan.groupby("wave").size()
        assert list(waves.index) == list(range(1, len(waves) + 1))
        assert list(waves) == sizes
        assert whole_groups(plan) == []
        shuffled = production.sample(frac=1, random_state=seed).reset_index(drop=True)
        pd.testing.assert_frame_equal(plan_waves(shuffled, share(canary), percentages, 5), plan)
    assert planned >= 15


@pytest.mark.slow  # about 5 s for the six seeds
@pytest.mark.parametrize("seed", range(6))
def test_small_fleets_are_refused_only_when_no_plan_exists(seed: int) -> None:
    rng = random.Random(100 + seed)
    refused = 0
    for _ in range(60):
        production = fleet(rng, rng.randint(2, 8), rng.randint(1, 4), rng.randint(1, 3), rng.randint(1, 2))
        canary, percentages = rng.choice([("1", [100]), ("2", [100]), ("1", [50, 50]), ("30%", [25, 75])])
        sizes = expected_sizes(len(production), canary, percentages)
        try:
            plan = plan_waves(production, share(canary), percentages, 5)
        except ValueError:
            refused += 1
            assert not feasible(production, sizes)
        else:
            assert whole_groups(plan) == []
    assert refused  # the generator does reach the impossible cases


def test_the_canary_spreads_over_groups_and_zones() -> None:
    rows = [
        {"account_id": "1", "region": "r", "resource_id": f"i-{g}{z}{n}", "patch_group": g}
        | {"availability_zone": z, "profile_id": "p01"}
        for g in "abcd"
        for z in "xyz"
        for n in range(3)
    ]
    plan = plan_waves(pd.DataFrame(rows), share("4"), [50, 50], 5)
    canary = plan[plan["wave"] == 1]
    assert len(canary) == 4
    assert canary["patch_group"].nunique() == 4
    assert canary["availability_zone"].nunique() == 3


def test_canary_bounds() -> None:
    one = pd.DataFrame(
        [
            {"account_id": "1", "region": "r", "resource_id": "i-1", "patch_group": "g"}
            | {"availability_zone": "a", "profile_id": "p01"}
        ]
    )
    assert plan_waves(one, share("5"), [100], 5)["wave"].tolist() == [1]
    two = pd.concat([one, one.assign(resource_id="i-2")], ignore_index=True)
    assert plan_waves(two, share("100%"), [100], 5)["wave"].tolist() == [1, 2]  # never every instance
    empty = plan_waves(one.iloc[:0], share("5%"), [25, 75], 5)
    assert empty.empty and list(empty.columns) == list(WAVE_PLAN_COLUMNS)


@pytest.mark.parametrize(
    ("canary", "percentages", "max_waves", "param"),
    [
        ("0", [100], 5, "canary"),
        ("1", [50, 40], 5, "wave_percentages"),
        ("1", [50, -10, 60], 5, "wave_percentages"),
        ("1", [25, 25, 25, 25], 4, "wave_percentages"),
        ("1", [100], 0, "max_waves"),
    ],
)
def test_invalid_params_name_the_param(canary: str, percentages: list[int], max_waves: int, param: str) -> None:
    production = fleet(random.Random(0), 10, 2, 2)
    with pytest.raises(ValueError, match=rf"^{param}:"):
        plan_waves(production, share(canary), percentages, max_waves)


def test_impossible_sizes_name_canary_and_wave_percentages() -> None:
    # Two patch groups of two, each in its own zone: a canary of one leaves a whole group to the last wave.
    rows = [
        {"account_id": "1", "region": "r", "resource_id": f"i-{g}{n}", "patch_group": g}
        | {"availability_zone": f"z{g}", "profile_id": "p01"}
        for g in "ab"
        for n in range(2)
    ]
    with pytest.raises(ValueError, match=r"^canary, wave_percentages: .*wave 2 takes all 2 instances"):
        plan_waves(pd.DataFrame(rows), share("1"), [100], 5)
    assert len(plan_waves(pd.DataFrame(rows), share("2"), [100], 5)) == 4


@pytest.mark.parametrize(
    ("size", "failures", "threshold", "expected"),
    [
        (10, 0, "0", (False, 0)),
        (10, 1, "0", (True, 0)),
        (10, 2, "2", (False, 2)),
        (10, 3, "2", (True, 2)),
        (10, 1, "10%", (False, 1)),
        (10, 2, "10%", (True, 1)),
        (19, 1, "10%", (False, 1)),  # 1.9 rounds down
        (5, 1, "10%", (True, 0)),
    ],
)
def test_halt_decision(size: int, failures: int, threshold: str, expected: tuple[bool, int]) -> None:
    assert halt_decision(size, failures, share(threshold)) == expected
