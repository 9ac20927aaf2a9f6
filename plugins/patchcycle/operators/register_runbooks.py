"""register_runbooks: the project's SSM Automation runbooks (include/automation) in one (connection, region),
created or updated to the files' content, idempotently, before any wave needs them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.config import REPO_ROOT, CycleConfig
from patchcycle.core.runbooks import MANAGED_TAG, RUNBOOKS, Runbook, RunbookError, registration
from patchcycle.hooks.automation import AutomationHook
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.operators.base import TargetOperator
from patchcycle.run_artifacts import RUNBOOKS as REGISTERED
from patchcycle.run_artifacts import Step
from patchcycle.run_records import RegisteredRunbook

AUTOMATION = REPO_ROOT / "include" / "automation"


def read_runbooks(folder: Path = AUTOMATION) -> list[Runbook]:
    """The project's runbooks, one YAML file each, named after the document."""
    missing = [f"{name}.yaml" for name in RUNBOOKS if not (folder / f"{name}.yaml").is_file()]
    if missing:
        raise AirflowFailException(f"runbook file(s) missing in {folder}: {', '.join(missing)}")
    return [Runbook(name, (folder / f"{name}.yaml").read_text()) for name in RUNBOOKS]


class RegisterRunbooksOperator(TargetOperator[AutomationHook, CycleConfig]):
    """Creates each PatchCycle-* runbook the target lacks, updates (and makes default) one whose content changed,
    leaves an unchanged one, and refuses a document of that name the project does not own."""

    aws_hook_class = AutomationHook
    config_class = CycleConfig

    def __init__(self, *, runbooks: str | Path = AUTOMATION, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runbooks = Path(runbooks)

    def execute(self, context: Context) -> dict[str, str]:
        artifacts = self.artifacts(context)
        with self.recording_failure(artifacts, Step.REGISTER_RUNBOOKS):
            account = self.account_or_caller(artifacts)
            # Every runbook is looked at before any is changed: a document the project does not own stops the
            # task before it creates or updates anything.
            plans = [self._plan(runbook, account) for runbook in read_runbooks(self.runbooks)]
            registered = {}
            for runbook, action, document in plans:
                version = self._apply(runbook, action, document, account)
                registered[runbook.name] = RegisteredRunbook(
                    name=runbook.name, document_version=version, action=action, content_sha256=runbook.sha256
                )
                self.log.info("Runbook %s in %s: %s (version %s)", runbook.name, self.target.key, action, version)
            artifacts.write(REGISTERED, registered, target=self.target)
            return {name: record.action for name, record in registered.items()}

    def _plan(self, runbook: Runbook, account: str) -> tuple[Runbook, str, dict[str, Any] | None]:
        """What registering `runbook` must do here, and the account's document of that name (None: none)."""
        region = str(self.region_name)
        with aws_call("ssm:DescribeDocument", account, region):
            document = self.hook.document(runbook.name)
        tags = default = latest = None
        if document is not None:
            with aws_call("ssm:ListTagsForResource", account, region):
                tags = self.hook.document_tags(runbook.name)
            if tags.get(MANAGED_TAG[0]) == MANAGED_TAG[1]:
                with aws_call("ssm:GetDocument", account, region):
                    default = self.hook.document_content(runbook.name, "$DEFAULT")
                    latest = self.hook.document_content(runbook.name, "$LATEST")
        try:
            return runbook, registration(runbook, tags, default, latest), document
        except RunbookError as error:
            raise AirflowFailException(f"account {account}, region {region}: {error}") from error

    def _apply(self, runbook: Runbook, action: str, document: dict[str, Any] | None, account: str) -> str:
        region = str(self.region_name)
        if action == "create":
            with aws_call("ssm:CreateDocument", account, region):
                return self.hook.create_runbook(runbook.name, runbook.content, dict([MANAGED_TAG]))
        assert document is not None  # every other action is on an existing document
        if action == "unchanged":
            return str(document.get("DefaultVersion") or document.get("DocumentVersion"))
        if action == "update":
            with aws_call("ssm:UpdateDocument", account, region):
                version = self.hook.update_runbook(runbook.name, runbook.content)
        else:  # set_default: the latest version already holds this content
            version = str(document["LatestVersion"])
        with aws_call("ssm:UpdateDocumentDefaultVersion", account, region):
            self.hook.set_default_version(runbook.name, version)
        return version
