"""What every patch-cycle task shares: the run's validated settings, its artifacts, and a record of its failure.

The run's first task validates the params (patchcycle.config) and passes the whole config on as XCom; every
other task takes it as `config` and reads it back with `settings()`, so no param reaches a task as a raw
string. Two small bases:

- TargetOperator: one (AWS connection, region), on the amazon provider's AwsBaseOperator, so aws_conn_id,
  region_name, verify and botocore_config behave as in the provider's own operators;
- FleetOperator: the whole run (every target at once), for the tasks that plan, gate, roll out and report.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, NoReturn, TypeVar

from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from patchcycle.config import CycleConfig, RunConfig, Target
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.links.base import persist_link
from patchcycle.run_artifacts import INVENTORY_SUMMARY, RUN_ERROR, TARGET_ERROR, RunArtifacts
from patchcycle.run_records import TaskError
from patchcycle.triggers.command_completion import CommandCompletionTrigger

C = TypeVar("C", bound=RunConfig)
H = TypeVar("H", bound=AwsGenericHook)  # type: ignore[type-arg]
K = TypeVar("K", bound=AwsGenericHook)  # type: ignore[type-arg]
# A deferred task's own timeout leaves its trigger room to report after the trigger's bound.
DEFER_MARGIN = timedelta(minutes=10)


class RunTask(Generic[C]):
    """The run's settings and artifacts, for a task that takes the run's config (validate_params' XCom)."""

    config_class: type[C]
    config: Any  # the validated config as validate_params pushed it (a dict once templated)
    task_id: str

    def settings(self) -> C:
        if not isinstance(self.config, Mapping):
            raise AirflowFailException(f"{self.task_id}: no run settings (validate_params did not run or failed)")
        try:
            return self.config_class.from_params(self.config)
        except ValueError as error:
            raise AirflowFailException(f"{self.task_id}: invalid run settings: {error}") from error

    def artifacts(self, context: Context) -> RunArtifacts:
        return RunArtifacts.of(self.settings(), context)


class FleetOperator(BaseOperator, RunTask[C]):
    """A task of the whole run: every target at once."""

    template_fields: Sequence[str] = ("config",)

    def __init__(self, *, config: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config


class TargetOperator(AwsBaseOperator[H], RunTask[C]):
    """A task of one (AWS connection, region): the amazon provider's operator, with the run's config."""

    template_fields: Sequence[str] = aws_template_fields("config")

    def __init__(self, *, config: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self._account_id = ""

    @property
    def target(self) -> Target:
        return Target(str(self.aws_conn_id), str(self.region_name))

    def hook_for(self, hook_class: type[K]) -> K:
        """Another of the amazon provider's hooks on this task's connection, region and botocore settings."""
        return hook_class(**self._hook_parameters)

    def persist_link(self, context: Context, link: type[BaseAwsLink], **fields: Any) -> None:
        """Store one of this task's console links (operator_extra_links), in its connection's region and partition;
        a mapped task instance stores its own."""
        persist_link(link, context, self, self.hook, **fields)

    def account_id(self, artifacts: RunArtifacts) -> str:
        """This target's account, as its inventory found it (for error messages); "" before any inventory."""
        if not self._account_id:
            summary = artifacts.find(INVENTORY_SUMMARY, target=self.target)
            self._account_id = summary.account_id if summary else ""
        return self._account_id

    def account_or_caller(self, artifacts: RunArtifacts) -> str:
        """This target's account: its inventory's, else the connection's own (sts:GetCallerIdentity), for the
        tasks that also run where no inventory was taken (the watch) or whose inventory failed."""
        if not self.account_id(artifacts):
            with aws_call("sts:GetCallerIdentity", "(this connection)", str(self.region_name)):
                self._account_id = self.hook.account_id
        return self._account_id

    @contextmanager
    def recording_failure(self, artifacts: RunArtifacts, step: str) -> Iterator[None]:
        """Leave the error where the report finds it, so one failed region does not hide the others."""
        with recorded_failure(artifacts, step, self.target):
            yield

    def wait_for_commands(
        self, config: CycleConfig, command_ids: Sequence[str], method_name: str = "execute_complete"
    ) -> NoReturn:
        """Defer until this target's commands are final or the run's command time limit passed."""
        waiting = [{**self.target.as_kwargs(), "command_ids": list(command_ids)}]
        defer_for_commands(self, config, waiting, method_name, verify=self.verify, botocore_config=self.botocore_config)


@contextmanager
def recorded_failure(artifacts: RunArtifacts, step: str, target: Target | None = None) -> Iterator[None]:
    """On an exception, write the step's error record (what failed, when, where), then re-raise."""
    try:
        yield
    except AirflowSkipException:
        raise  # a skip is a decision, not a failure
    except Exception as error:
        record = TaskError(
            stage=step,
            error=f"{type(error).__name__}: {error}",
            at=datetime.now(UTC).isoformat(),
            where=traceback.format_exception_only(error)[-1].strip(),
            aws_conn_id=target.aws_conn_id if target else "",
            region=target.region_name if target else "",
        )
        if target is None:
            artifacts.write(RUN_ERROR, record, step=step)
        else:
            artifacts.write(TARGET_ERROR, record, step=step, target=target)
        raise


def defer_for_commands(
    task: BaseOperator,
    config: CycleConfig,
    waiting: Sequence[Mapping[str, Any]],
    method_name: str,
    *,
    verify: bool | str | None = None,
    botocore_config: dict[str, Any] | None = None,
) -> NoReturn:
    """Defer `task` until the commands of `waiting` ([{aws_conn_id, region_name, command_ids}]) are final.

    The trigger cancels nothing: it reports the commands still running at the run's command time limit, and
    the resumed task cancels them (their instances count as timed out).
    """
    limit = config.command_timeout
    task.defer(
        trigger=CommandCompletionTrigger(
            waiting,
            poll_interval=config.poll_seconds,
            timeout=limit.total_seconds(),
            verify=verify,
            botocore_config=botocore_config,
        ),
        method_name=method_name,
        timeout=limit + DEFER_MARGIN,
    )
