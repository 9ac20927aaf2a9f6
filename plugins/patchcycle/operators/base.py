"""What every patch-cycle operator shares: its target, its artifact store, and a record of its failure."""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from patchcycle.artifacts import ArtifactStore
from patchcycle.config import Target


class PatchCycleOperator(BaseOperator):
    """Base for the stages that work on one (AWS connection, region) and keep their tables as artifacts."""

    template_fields: Sequence[str] = ("aws_conn_id", "region_name", "artifact_root", "artifact_conn_id")

    def __init__(
        self,
        *,
        aws_conn_id: str = "aws_default",
        region_name: str,
        artifact_root: str,
        artifact_conn_id: str = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.artifact_root = artifact_root
        self.artifact_conn_id = artifact_conn_id
        self.account_id = ""  # known once the target's inventory exists (see store)

    @property
    def target(self) -> Target:
        return Target(self.aws_conn_id, self.region_name)

    def store(self, context: Context) -> ArtifactStore:
        """The run's artifact store; also learns this target's account (for error messages) from its inventory."""
        store = ArtifactStore(self.artifact_root, context["dag"].dag_id, context["run_id"], self.artifact_conn_id)
        inventory = store.path("inventory", f"{self.target.key}.parquet")
        if not self.account_id and inventory.exists():
            accounts = store.read_frame(str(inventory))["account_id"]
            self.account_id = str(accounts.iloc[0]) if len(accounts) else ""
        return store

    def recording_failure(self, store: ArtifactStore, stage: str) -> AbstractContextManager[None]:
        """Leave the error where the report finds it, so one failed region does not hide the others."""
        return recorded_failure(
            store, f"{stage}.{self.target.key}", stage=stage, aws_conn_id=self.aws_conn_id, region=self.region_name
        )


@contextmanager
def recorded_failure(store: ArtifactStore, name: str, **where: str) -> Iterator[None]:
    """On an exception, write errors/{name}.json (what failed, when, and `where`), then re-raise."""
    try:
        yield
    except AirflowSkipException:
        raise  # a skip is a decision, not a failure
    except Exception as error:
        store.write_json(
            "errors",
            f"{name}.json",
            {
                **where,
                "error": f"{type(error).__name__}: {error}",
                "at": datetime.now(UTC).isoformat(),
                "where": traceback.format_exception_only(error)[-1].strip(),
            },
        )
        raise
