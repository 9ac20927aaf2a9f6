"""patch_baselines' tasks: validate the run's params and baseline files, then diff and apply them per target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.baseline_files import load_baseline_files, parse_baselines
from patchcycle.config import BaselinesConfig, Target
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
    """Validates the run's params (BaselinesConfig) and every baseline file before any AWS call.

    Returns the (connection, region) targets to fan out over; pushes `config` (the validated settings) and
    `baselines` ({file: document}, the validated baselines, so every target applies the same ones).
    """

    def execute(self, context: Context) -> list[dict[str, str]]:
        try:
            config = BaselinesConfig.from_params(context["params"])
        except ValueError as error:
            raise AirflowFailException(f"invalid params: {error}") from error
        try:
            specs = load_baseline_files(config.directory)
        except BaselineConfigError as error:
            raise AirflowFailException(f"invalid baseline file: {error}") from error
        self.log.info(
            "%d baselines in %s for %d (connection, region) targets%s%s",
            len(specs),
            config.directory,
            len(config.targets),
            " (dry run: nothing will change)" if config.dry_run else "",
            " (prune: managed baselines not in the files will be deleted)" if config.prune else "",
        )
        ti = context["ti"]
        ti.xcom_push(key="config", value=config.as_params())
        ti.xcom_push(key="baselines", value={spec.source: spec.as_document() for spec in specs})
        return [target.as_kwargs() for target in config.targets]


class PatchBaselinesOperator(AwsBaseOperator[PatchBaselineHook]):
    """One target's baselines: read SSM, diff against the baselines, log the diff, apply it unless dry_run.

    Returns a small summary: the target, account, whether it applied, the counts per change kind and the
    diff's lines. Idempotent: once applied, the diff is empty and only reads are made.
    """

    aws_hook_class = PatchBaselineHook
    template_fields: Sequence[str] = aws_template_fields("config", "baselines")

    def __init__(self, *, config: Any, baselines: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.baselines = baselines

    @property
    def target(self) -> Target:
        return Target(str(self.aws_conn_id), str(self.region_name))

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            config = BaselinesConfig.from_params(self.config or {})
            specs = parse_baselines(self.baselines or {})
        except (ValueError, BaselineConfigError) as error:
            raise AirflowFailException(f"invalid settings or baseline: {error}") from error
        region = str(self.region_name)
        with aws_call("sts:GetCallerIdentity", "(this connection)", region):
            account = self.hook.account_id
        current, registrations = self.read_ssm(self.hook, specs, account)
        where = f"{self.target.key} (account {account})"
        try:
            diff = plan_baselines(specs, current, registrations, prune=config.prune)
        except OwnershipError as error:
            raise AirflowFailException(f"{where}: refused, nothing changed: {error}") from error
        mode = "dry run, nothing changed" if config.dry_run else "applying"
        self.log.info("Baselines diff for %s, %s:\n%s", where, mode, "\n".join(diff.lines()) or "(none)")
        if not config.dry_run:
            self.apply(self.hook, diff, account)
            self.log.info("Applied %d changes in %s", len(diff.changes), where)
        return {
            **self.target.as_kwargs(),
            "account_id": account,
            "dry_run": config.dry_run,
            "applied": not config.dry_run and not diff.empty,
            "counts": diff.counts(),
            "changes": diff.lines(),
        }

    def read_ssm(
        self, hook: PatchBaselineHook, specs: Sequence[BaselineSpec], account: str
    ) -> tuple[list[CurrentBaseline], list[Registration]]:
        """The account's baselines with their tags (and the fields of managed ones the files declare),
        and its patch groups' registrations."""
        region = str(self.region_name)
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
        region = str(self.region_name)
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
