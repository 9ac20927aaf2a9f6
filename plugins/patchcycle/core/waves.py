"""Production waves: a canary first, then waves sized by percentages, and when a wave's failures halt the rest.

No wave takes every instance of a patch group (per account, region and patch group) or of an
availability zone (per account and zone) that has two instances or more, so a bad patch never takes
a whole tier or zone down at once. The last wave takes whatever is left, so every such group must be
touched by an earlier wave. The planner fills the waves in order, each first taking one instance in
every group not touched yet (a maximum matching, so one instance touches a patch group and a zone at
once where it can; this also spreads the canary over as many groups as it can), then a proportional
sample of the rest; then it swaps instances between waves to undo any whole group left. When wave
sizes leave no such plan, plan_waves says so rather than break the rule.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Final

import pandas as pd

from patchcycle.core.frames import typed_frame
from patchcycle.core.quantities import CountOrPercent

WAVE_PLAN_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",
    "patch_group": "str",
    "availability_zone": "str",
    "profile_id": "str",
    "wave": "int64",  # 1 = canary
}

# A group an instance belongs to: ("group", account, region, patch group) or ("az", account, zone).
Part = tuple[str, ...]
# Instances with the same patch group and zone are interchangeable for the rule: planned as one cell.
Cell = tuple[Part, Part]


def wave_sizes(total: int, canary: CountOrPercent, wave_percentages: Sequence[int], max_waves: int) -> list[int]:
    """Instances per wave, canary first; zero-sized waves dropped."""
    if max_waves < 1:
        raise ValueError(f"max_waves: must be at least 1, got {max_waves}")
    if 1 + len(wave_percentages) > max_waves:
        raise ValueError(
            f"wave_percentages: {len(wave_percentages)} waves after the canary make {1 + len(wave_percentages)}, "
            f"more than max_waves {max_waves}"
        )
    if any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in wave_percentages):
        raise ValueError(f"wave_percentages: must be whole percentages of 0 or more, got {list(wave_percentages)}")
    if sum(wave_percentages) != 100:
        raise ValueError(
            f"wave_percentages: must add up to 100, got {list(wave_percentages)} ({sum(wave_percentages)})"
        )
    if canary.value < 1:
        raise ValueError(f"canary: must be at least 1 instance or 1%, got {canary}")
    size = max(1, canary.of(total, round_up=True))
    # The canary never takes everything: something must be left to hold back if it fails.
    canary_size = min(size, total - 1) if total >= 2 else total
    rest = total - canary_size
    sizes = [p * rest // 100 for p in wave_percentages]
    # Largest remainder (earlier waves first on ties), so the sizes add up to `rest` exactly; whole numbers
    # keep ties exact.
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(wave_percentages[i] * rest % 100), i))
    for i in by_remainder[: rest - sum(sizes)]:
        sizes[i] += 1
    return [size for size in [canary_size, *sizes] if size > 0]


def _cells(production: pd.DataFrame) -> dict[Cell, list[str]]:
    """Instance ids by (patch group, zone), sorted."""
    cells: dict[Cell, list[str]] = {}
    columns = ["account_id", "region", "patch_group", "availability_zone", "resource_id"]
    for account, region, group, zone, resource_id in production[columns].itertuples(index=False):
        cell = (("group", str(account), str(region), str(group)), ("az", str(account), str(zone)))
        cells.setdefault(cell, []).append(str(resource_id))
    return {cell: sorted(ids) for cell, ids in sorted(cells.items())}


class _Plan:
    """How many instances of each cell go in each wave (0-based here), with per-part totals kept in step."""

    def __init__(self, cells: Mapping[Cell, int], waves: int) -> None:
        self.counts = {cell: [0] * waves for cell in cells}
        self.unplanned = dict(cells)
        self.size: Counter[Part] = Counter()
        self.cells_of: dict[Part, list[Cell]] = {}
        self.per_wave: dict[Part, list[int]] = {}
        for cell, count in cells.items():
            for part in cell:
                self.size[part] += count
                self.cells_of.setdefault(part, []).append(cell)
                self.per_wave.setdefault(part, [0] * waves)

    def put(self, cell: Cell, wave: int, count: int = 1) -> None:
        self.counts[cell][wave] += count
        self.unplanned[cell] -= count
        for part in cell:
            self.per_wave[part][wave] += count

    def move(self, cell: Cell, source: int, target: int) -> None:
        for wave, step in ((source, -1), (target, 1)):
            self.counts[cell][wave] += step
            for part in cell:
                self.per_wave[part][wave] += step

    def touched(self, part: Part) -> bool:
        return any(self.per_wave[part])

    def completes(self, cell: Cell, wave: int) -> bool:
        """Whether one more instance of `cell` in `wave` would put a whole part (of 2 or more) there."""
        return any(self.size[p] >= 2 and self.per_wave[p][wave] == self.size[p] - 1 for p in cell)

    def whole(self, part: Part) -> bool:
        """Whether one wave holds every instance of the part (of 2 or more)."""
        return self.size[part] >= 2 and self.size[part] in self.per_wave[part]


def _max_matching(cells: Sequence[Cell]) -> list[Cell]:
    """As many cells as possible, no two sharing a group or a zone (Kuhn's augmenting paths).

    Each such cell touches two parts at once, so they make the smallest set touching every part.
    """
    by_group: dict[Part, list[Cell]] = {}
    for cell in cells:
        by_group.setdefault(cell[0], []).append(cell)
    holder: dict[Part, Cell] = {}  # zone -> the matched cell; paths alternate between zones, so they stay short

    def augment(group: Part, seen: set[Part]) -> bool:
        for cell in by_group[group]:
            if cell[1] not in seen:
                seen.add(cell[1])
                if cell[1] not in holder or augment(holder[cell[1]][0], seen):
                    holder[cell[1]] = cell
                    return True
        return False

    for group in by_group:
        augment(group, set())
    return list(holder.values())


def _fill_wave(plan: _Plan, wave: int, size: int) -> None:
    """Plan `size` instances in `wave`: first one in each part no wave touched yet, then a proportional share."""
    untouched = {part for part in plan.cells_of if plan.size[part] >= 2 and not plan.touched(part)}
    pairs = [cell for cell, count in plan.unplanned.items() if count and set(cell) <= untouched]
    # Groups first (the largest first), then zones: the canary spreads over as many groups as it can.
    by_size = sorted(plan.cells_of, key=lambda part: (part[0] != "group", -plan.size[part], part))
    rank = {part: number for number, part in enumerate(by_size)}
    for cell in sorted(_max_matching(pairs), key=lambda cell: rank[cell[0]]):
        if size and not plan.completes(cell, wave):
            plan.put(cell, wave)
            size -= 1
    for part in by_size:
        if size == 0:
            break
        if part not in untouched or plan.touched(part):
            continue
        candidates = [cell for cell in plan.cells_of[part] if plan.unplanned[cell]]
        if not candidates:
            continue
        # Prefer a cell that also touches its other part for the first time, then the fullest one.
        cell = min(
            candidates, key=lambda c: (plan.completes(c, wave), any(map(plan.touched, c)), -plan.unplanned[c], c)
        )
        plan.put(cell, wave)
        size -= 1
    pool = sum(plan.unplanned.values())
    if size == 0 or pool == 0:
        return
    # The rest in proportion to what each cell has left (largest remainder), so every wave is a sample.
    quotas = {cell: size * count / pool for cell, count in plan.unplanned.items() if count}
    shares = {cell: math.floor(quota) for cell, quota in quotas.items()}
    by_remainder = sorted(quotas, key=lambda cell: (-(quotas[cell] - shares[cell]), cell))
    for cell in by_remainder[: size - sum(shares.values())]:
        shares[cell] += 1
    for cell, share in shares.items():
        plan.put(cell, wave, share)


def _repair(plan: _Plan) -> None:
    """Swap instances between waves while that lowers the number of whole parts; every wave keeps its size.

    The first pass fills waves in order and can corner itself (e.g. a canary whose first pick leaves only
    picks that complete a part); a swap with another wave undoes that.
    """

    def broken(cells: Sequence[Cell]) -> int:
        return sum(plan.whole(part) for part in {part for cell in cells for part in cell})

    def swap_once() -> bool:
        for part in sorted(part for part in plan.cells_of if plan.whole(part)):
            source = plan.per_wave[part].index(plan.size[part])
            for first in plan.cells_of[part]:
                others = [
                    (second, target)
                    for second, counts in plan.counts.items()
                    for target, count in enumerate(counts)
                    if count and second != first and target != source
                ]
                for second, target in others:
                    before = broken((first, second))
                    plan.move(first, source, target)
                    plan.move(second, target, source)
                    if broken((first, second)) < before:
                        return True
                    plan.move(first, target, source)  # undo
                    plan.move(second, source, target)
        return False

    while swap_once():
        pass


def _assign(production: pd.DataFrame, sizes: Sequence[int]) -> dict[str, int]:
    """{resource id: wave number (1 = canary)}."""
    cells = _cells(production)
    plan = _Plan({cell: len(ids) for cell, ids in cells.items()}, len(sizes))
    for wave, size in enumerate(sizes[:-1]):
        _fill_wave(plan, wave, size)
    for cell, count in list(plan.unplanned.items()):  # the last wave takes the rest
        plan.put(cell, len(sizes) - 1, count)
    _repair(plan)
    waves: dict[str, int] = {}
    for cell, ids in cells.items():
        numbers = [wave for wave, count in enumerate(plan.counts[cell], start=1) for _ in range(count)]
        waves.update(zip(ids, numbers, strict=True))
    return waves


def _violations(plan: pd.DataFrame) -> list[str]:
    """Where a wave takes every instance of a patch group or zone of two or more."""
    found = []
    for kind, columns in (
        ("patch group", ["account_id", "region", "patch_group"]),
        ("zone", ["account_id", "availability_zone"]),
    ):
        for key, members in plan.groupby(columns, sort=True):
            waves = set(members["wave"])
            if len(members) >= 2 and len(waves) == 1:
                found.append(
                    f"wave {waves.pop()} takes all {len(members)} instances of {kind} {'/'.join(map(str, key))}"
                )
    return found


def plan_waves(
    production: pd.DataFrame, canary: CountOrPercent, wave_percentages: Sequence[int], max_waves: int
) -> pd.DataFrame:
    """Each production instance's wave (WAVE_PLAN_COLUMNS), sorted by wave, account, region, id.

    Wave 1 is the canary: `canary` instances, or that percentage of all (rounded up, at least 1, never
    all when there are two or more). The rest is split by `wave_percentages` (adding up to 100; largest
    remainder); an empty wave is dropped and later ones renumbered. Deterministic for a given set of
    instances, whatever their order. ValueError naming the param when the params are invalid, or when
    these wave sizes cannot keep every patch group and zone of two or more out of a single wave.
    """
    missing = [column for column in WAVE_PLAN_COLUMNS if column != "wave" and column not in production.columns]
    if missing:
        raise ValueError(f"production: missing column(s) {missing}")
    ordered = production.sort_values(["account_id", "region", "resource_id"], ignore_index=True)
    sizes = wave_sizes(len(ordered), canary, wave_percentages, max_waves)
    waves = _assign(ordered, sizes)
    rows = [
        {**row, "wave": waves[str(row["resource_id"])]}
        for row in ordered[list(WAVE_PLAN_COLUMNS)[:-1]].to_dict("records")
    ]
    plan = typed_frame(rows, WAVE_PLAN_COLUMNS).sort_values(
        ["wave", "account_id", "region", "resource_id"], ignore_index=True
    )
    violations = _violations(plan)
    if violations:
        raise ValueError(
            f"canary, wave_percentages: with waves of {sizes} instances {violations[0]}"
            + (f" (and {len(violations) - 1} more)" if len(violations) > 1 else "")
            + "; the waves before the last must touch every patch group and zone of two or more: "
            "raise canary or add waves"
        )
    return plan


def halt_decision(wave_size: int, failures: int, threshold: CountOrPercent) -> tuple[bool, int]:
    """(halt?, failures allowed) after a wave: halt when more instances failed than `threshold` allows.

    threshold: a count (2) or a percentage of the wave (10%, rounded down).
    """
    allowed = threshold.of(wave_size, round_up=False)
    return failures > allowed, allowed
