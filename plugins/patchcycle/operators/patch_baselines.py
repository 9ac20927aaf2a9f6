"""patch_baselines' tasks: validate the run's params and baseline files, then diff and apply them per target."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.baseline_files import load_baseline_files, parse_baselines
from patchcycle.config import Target, parse_targets
from patchcycle.core.baselines.diff import BaselineDiff
from patchcycle.core.baselines.model import (
    BaselineConfigError,
    BaselineSpec,
    CurrentBaseline,
    OwnershipError,
    Registration,
)
from patchcycle.core.baselines.plan import plan_baselines
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.patch_baselines import PatchBaselineHook


class BaselineParamsOperator(BaseOperator):
    """Validates the run's params and every baseline file before any AWS call.

    Returns the (connection, region) targets to fan out over; pushes `baselines` ({file: document}, the
    validated baselines for every target to apply alike), `dry_run` and `prune` as XCom keys.
    """

    def __init__(self, *, relative_to: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.relative_to = relative_to  # a relative baselines_dir is resolved against this directory

    def execute(self, context: Context) -> list[dict[str, str]]:
        params = context["params"]
        try:
            targets = parse_targets(params.get("targets"))
            dry_run = _flag(params, "dry_run", True)
            prune = _flag(params, "prune", False)
            directory = self.baselines_dir(params.get("baselines_dir"))
        except ValueError as error:
            raise AirflowFailException(f"invalid params: {error}") from error
        try:
            specs = load_baseline_files(directory)
        except BaselineConfigError as error:
            raise AirflowFailException(f"invalid baseline file: {error}") from error
        self.log.info(
            "%d baselines in %s for %d (connection, region) targets%s%s",
            len(specs),
            directory,
            len(targets),
            " (dry run: nothing will change)" if dry_run else "",
            " (prune: managed baselines not in the files will be deleted)" if prune else "",
        )
        ti = context["ti"]
        ti.xcom_push(key="baselines", value={spec.source: spec.as_document() for spec in specs})
        ti.xcom_push(key="dry_run", value=dry_run)
        ti.xcom_push(key="prune", value=prune)
        return [target.as_kwargs() for target in targets]

    def baselines_dir(self, value: Any) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"baselines_dir: must be a directory path, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() or not self.relative_to else Path(self.relative_to) / path


def _flag(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"{name}: must be true or false, got {value!r}")
    return value


class PatchBaselinesOperator(BaseOperator):
    """One target's baselines: read SSM, diff against the baselines, log the diff, apply it unless dry_run.

    plan_only is the run's dry_run. Returns a small summary: the target, account, whether it applied, the
    counts per change kind and the diff's lines. Idempotent: once applied, the diff is empty and only reads
    are made.
    """

    template_fields: Sequence[str] = ("aws_conn_id", "region_name", "baselines", "plan_only", "prune")

    def __init__(
        self,
        *,
        aws_conn_id: str = "aws_default",
        region_name: str,
        baselines: Any,
        plan_only: Any = True,
        prune: Any = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.baselines = baselines
        self.plan_only = plan_only  # the run's dry_run (BaseOperator.dry_run is a method)
        self.prune = prune

    @property
    def target(self) -> Target:
        return Target(self.aws_conn_id, self.region_name)

    def execute(self, context: Context) -> dict[str, Any]:
        if not isinstance(self.plan_only, bool) or not isinstance(self.prune, bool):
            raise AirflowFailException(f"plan_only and prune must be true or false: {self.plan_only!r}, {self.prune!r}")
        try:
            specs = parse_baselines(self.baselines or {})
        except BaselineConfigError as error:
            raise AirflowFailException(f"invalid baseline: {error}") from error
        region = self.region_name
        hook = PatchBaselineHook(aws_conn_id=self.aws_conn_id, region_name=region)
        with aws_call("sts:GetCallerIdentity", "(this connection)", region):
            account = hook.account_id
        current, registrations = self.read_ssm(hook, specs, account)
        where = f"{self.target.key} (account {account})"
        try:
            diff = plan_baselines(specs, current, registrations, prune=self.prune)
        except OwnershipError as error:
            raise AirflowFailException(f"{where}: refused, nothing changed: {error}") from error
        mode = "dry run, nothing changed" if self.plan_only else "applying"
        self.log.info("Baselines diff for %s, %s:\n%s", where, mode, "\n".join(diff.lines()) or "(none)")
        if not self.plan_only:
            self.apply(hook, diff, account)
            self.log.info("Applied %d changes in %s", len(diff.changes), where)
        return {
            **self.target.as_kwargs(),
            "account_id": account,
            "dry_run": self.plan_only,
            "applied": not self.plan_only and not diff.empty,
            "counts": diff.counts(),
            "changes": diff.lines(),
        }

    def read_ssm(
        self, hook: PatchBaselineHook, specs: Sequence[BaselineSpec], account: str
    ) -> tuple[list[CurrentBaseline], list[Registration]]:
        """The account's baselines with their tags (and the fields of managed ones the files declare),
        and its patch groups' registrations."""
        region = self.region_name
        declared = {spec.name for spec in specs}
        with aws_call("ssm:DescribePatchBaselines", account, region):
            identities = hook.own_baselines()
        current = []
        for identity in identities:
            baseline_id = str(identity["BaselineId"])
            with aws_call("ssm:ListTagsForResource", account, region):
                tags = hook.baseline_tags(baseline_id)
            baseline = CurrentBaseline(
                baseline_id, str(identity["BaselineName"]), str(identity["OperatingSystem"]), tags
            )
            if baseline.managed and baseline.name in declared:
                with aws_call("ssm:GetPatchBaseline", account, region):
                    fields = hook.baseline(baseline_id)
                baseline = CurrentBaseline(baseline.baseline_id, baseline.name, baseline.operating_system, tags, fields)
            current.append(baseline)
        with aws_call("ssm:DescribePatchGroups", account, region):
            mappings = hook.patch_groups()
        registrations = [
            Registration(
                str(mapping["PatchGroup"]),
                str(mapping["BaselineIdentity"]["OperatingSystem"]),
                str(mapping["BaselineIdentity"]["BaselineId"]),
                str(mapping["BaselineIdentity"].get("BaselineName", "")),
            )
            for mapping in mappings
        ]
        return current, registrations

    def apply(self, hook: PatchBaselineHook, diff: BaselineDiff, account: str) -> None:
        """Make the calls in the diff's order (baselines before their patch groups, moves as pairs)."""
        region = self.region_name
        created: dict[str, str] = {}
        for change in diff.changes:
            self.log.info("%s", change.describe())
            baseline_id = change.baseline_id or created.get(change.baseline_name, "")
            if change.kind == "create":
                with aws_call("ssm:CreatePatchBaseline", account, region):
                    created[change.baseline_name] = hook.create_baseline(change.values)
            elif change.kind == "update":
                with aws_call("ssm:UpdatePatchBaseline", account, region):
                    hook.update_baseline(baseline_id, change.values)
            elif change.kind == "tag":
                with aws_call("ssm:AddTagsToResource", account, region):
                    hook.add_tags(baseline_id, change.values)
            elif change.kind == "untag":
                with aws_call("ssm:RemoveTagsFromResource", account, region):
                    hook.remove_tags(baseline_id, sorted(change.values))
            elif change.kind == "deregister":
                with aws_call("ssm:DeregisterPatchBaselineForPatchGroup", account, region):
                    hook.deregister_patch_group(baseline_id, change.patch_group)
            elif change.kind == "register":
                with aws_call("ssm:RegisterPatchBaselineForPatchGroup", account, region):
                    hook.register_patch_group(baseline_id, change.patch_group)
            else:
                with aws_call("ssm:DeletePatchBaseline", account, region):
                    hook.delete_baseline(baseline_id)
