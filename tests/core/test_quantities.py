"""CountOrPercent: one parser for every "a count or a %" param (SSM's syntax), and how much of a set it is."""

from __future__ import annotations

import pytest

from patchcycle.core.quantities import CountOrPercent


@pytest.mark.parametrize(
    ("text", "minimum", "expected"),
    [("3", 1, (3, False)), ("5%", 1, (5, True)), ("100%", 1, (100, True)), ("0", 0, (0, False)), ("0%", 0, (0, True))],
)
def test_counts_and_percentages_parse(text: str, minimum: int, expected: tuple[int, bool]) -> None:
    parsed = CountOrPercent.parse("canary", text, minimum=minimum)
    assert (parsed.value, parsed.percent) == expected
    assert str(parsed) == text  # written back as SSM and people read it


@pytest.mark.parametrize("text", ["", "-1", "1.5", "%", "101%", "05", "3 instances", " 5", "12345678", 5, None])
def test_anything_else_is_refused_naming_the_field(text: object) -> None:
    with pytest.raises(ValueError, match=r"^halt_threshold: must be a count or a percentage"):
        CountOrPercent.parse("halt_threshold", text, minimum=0)


def test_the_minimum_refuses_zero_where_zero_means_nothing() -> None:
    with pytest.raises(ValueError, match=r"^max_concurrency: .*such as '10' or '10%', got '0'"):
        CountOrPercent.parse("max_concurrency", "0")
    with pytest.raises(ValueError, match=r"^canary:"):
        CountOrPercent.parse("canary", "0%")


@pytest.mark.parametrize(
    ("text", "total", "up", "down"),
    [("10%", 19, 2, 1), ("10%", 20, 2, 2), ("5%", 1, 1, 0), ("0%", 50, 0, 0), ("7", 3, 7, 7)],
)
def test_share_of_a_set_rounds_as_asked(text: str, total: int, up: int, down: int) -> None:
    share = CountOrPercent.parse("x", text, minimum=0)
    assert share.of(total, round_up=True) == up
    assert share.of(total, round_up=False) == down
