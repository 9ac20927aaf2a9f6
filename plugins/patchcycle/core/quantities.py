"""A count or a percentage ("10" or "10%"): SSM's MaxConcurrency / MaxErrors, the canary, the halt threshold.

One parser for every param of that kind, so they accept and refuse the same texts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_COUNT_OR_PERCENT: Final = re.compile(r"^(0|[1-9][0-9]*)(%?)$")
# SSM's MaxConcurrency and MaxErrors are at most 7 characters (botocore's ssm model).
MAX_LENGTH: Final = 7


@dataclass(frozen=True)
class CountOrPercent:
    """`value` instances, or `value` percent of a set when `percent`."""

    value: int
    percent: bool

    @classmethod
    def parse(cls, name: str, text: object, *, minimum: int = 1) -> CountOrPercent:
        """Parse "10" or "10%"; ValueError naming `name` unless it is a count or percentage of at least `minimum`
        (percentages at most 100%) in at most MAX_LENGTH characters."""
        match = _COUNT_OR_PERCENT.match(text) if isinstance(text, str) and len(text) <= MAX_LENGTH else None
        parsed = cls(int(match.group(1)), match.group(2) == "%") if match else None
        if parsed is None or parsed.value < minimum or (parsed.percent and parsed.value > 100):
            example = "'0' or '10%'" if minimum == 0 else "'10' or '10%'"
            raise ValueError(f"{name}: must be a count or a percentage such as {example}, got {text!r}")
        return parsed

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)

    def of(self, total: int, *, round_up: bool) -> int:
        """How many of `total` this is (a count is taken as is); percentages rounded up or down."""
        if not self.percent:
            return self.value
        share = self.value * total
        return -(-share // 100) if round_up else share // 100
