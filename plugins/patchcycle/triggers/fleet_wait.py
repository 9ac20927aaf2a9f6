"""What the triggers that wait on a wave's work across (connection, region) targets share: the targets, each
with the ids it waits on, checked and serialized the same way, and the time bound."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger


class FleetWaitTrigger(BaseTrigger):
    """Waits on ids (commands, executions) in one or more targets {"aws_conn_id", "region_name", IDS_KEY: [ids]}
    until every one is final, or until `timeout` seconds after `started_at`. Ids are unique across targets.
    `verify` and `botocore_config` are the amazon provider's client settings, as the deferring operator had them."""

    IDS_KEY: ClassVar[str]  # the targets' key for the ids, e.g. "command_ids"
    NOUN: ClassVar[str]  # what the ids are, for errors, e.g. "command id"

    def __init__(
        self,
        targets: Sequence[Mapping[str, Any]],
        poll_interval: float = 30.0,
        timeout: float = 4 * 3600.0,
        started_at: float | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.targets = [self._target(target) for target in targets]
        repeated = sorted(i for i, n in Counter(self.ids).items() if n > 1)
        if repeated:
            raise ValueError(f"{self.IDS_KEY} must be unique across targets; repeated: {repeated}")
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.started_at = started_at if started_at is not None else time.time()
        self.verify = verify
        self.botocore_config = botocore_config

    @property
    def ids(self) -> list[str]:
        """Every id waited on, in target order."""
        return [i for target in self.targets for i in target[self.IDS_KEY]]

    def timed_out(self) -> bool:
        return time.time() - self.started_at > self.timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "targets": [dict(target) for target in self.targets],
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "started_at": self.started_at,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
            },
        )

    @classmethod
    def _target(cls, target: Mapping[str, Any]) -> dict[str, Any]:
        """A target as a plain JSON-able dict; every key spelled out, so a typo cannot fall back to a default."""
        keys = {"aws_conn_id", "region_name", cls.IDS_KEY}
        if set(target) != keys:
            raise ValueError(f"a target has exactly the keys {sorted(keys)}, got {sorted(target)}")
        ids = target[cls.IDS_KEY]
        if isinstance(ids, str) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"{cls.IDS_KEY} must be a list of {cls.NOUN} strings, got {ids!r}")
        return {"aws_conn_id": target["aws_conn_id"], "region_name": target["region_name"], cls.IDS_KEY: list(ids)}
