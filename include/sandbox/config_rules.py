"""AWS Config in the sandbox: the configuration recorder, config rules, their evaluations and results.

moto 5.2.5 keeps config rules as bare records (no evaluations, no results, no link to the recorder),
so the sandbox serves the whole rule and recorder read path itself, with state in
``world.extra["config_rules"]`` per (account, region), built from the scenario's ``config`` section on
first use:

* The configuration recorder ("default") is recording every supported resource type unless the
  scenario says ``stopped`` or ``none`` (per region through ``regions``) or lists
  ``recorded_resource_types``. Start/StopConfigurationRecorder act on it; Put/DeleteConfigurationRecorder
  and delivery channels stay moto's and are not seen here.
* PutConfigRule creates or updates a rule (AWS managed rules are checked against moto's list of
  source identifiers and their parameters); without a recorder it fails with
  NoAvailableConfigurationRecorderException. Creating or updating a rule starts an evaluation, as on AWS.
* An evaluation is invoked at once and completes ``evaluation_seconds`` of simulated time later. It
  reflects the state at its invocation: for EC2_MANAGEDINSTANCE_PATCH_COMPLIANCE_STATUS_CHECK, one
  result per registered managed instance that has reported a patch state (the configuration item
  AWS::SSM::PatchCompliance, resource id ``AWS::SSM::ManagedInstanceInventory/<instance id>``):
  NON_COMPLIANT when its last Patch Manager report has missing, failed, pending-reboot or
  installed-rejected patches, COMPLIANT otherwise. Other rules evaluate to no results. While the
  recorder is not recording (or does not record AWS::SSM::PatchCompliance) no configuration item
  changes, so an evaluation keeps the rule's previous results.
* StartConfigRulesEvaluation: LimitExceededException while an evaluation of a named rule is in
  progress or within a minute of the previous call for it, as AWS documents. The scenario's
  ``periodic_evaluation_minutes`` re-evaluates every rule on that period (taken lazily, with the
  state when the sandbox is next asked).
* Limits come from botocore's model (25 rule names, Limit 0-100 / 0-50, ComplianceTypes up to 3);
  INSUFFICIENT_DATA cannot filter GetComplianceDetailsByConfigRule (InvalidParameterValueException).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from moto.config.models import MANAGED_RULES_CONSTRAINTS

from include.sandbox import patching
from include.sandbox.api import Handler, RequestContext
from include.sandbox.paging import decode_token, encode_token
from include.sandbox.protocol import AwsApiError

if TYPE_CHECKING:
    from include.sandbox.world import World

STATE_KEY = "config_rules"
PATCH_RULE = "EC2_MANAGEDINSTANCE_PATCH_COMPLIANCE_STATUS_CHECK"
PATCH_COMPLIANCE = "AWS::SSM::PatchCompliance"
# What Config reports as the id of an instance's AWS::SSM::PatchCompliance configuration item.
PATCH_RESOURCE_PREFIX = "AWS::SSM::ManagedInstanceInventory/"
RECORDER_NAME = "default"
RECORDER_STATES = ("recording", "stopped", "none")
START_INTERVAL = timedelta(minutes=1)  # StartConfigRulesEvaluation: at most once a minute per rule
MAX_RULES = 1000  # AWS Config rules per account and region (default quota)
RULES_PAGE = 25  # DescribeConfigRules returns 25 rules a page
DEFAULT_STATUS_LIMIT = 50
DEFAULT_DETAILS_LIMIT = 10

# The operations moto 5.2.5 does not serve as AWS does: evaluations and results are missing
# (500 NotImplemented), rules and recorders are not linked to either.
MOTO_MISSING: list[str] = [
    "StartConfigRulesEvaluation",
    "DescribeConfigRuleEvaluationStatus",
    "GetComplianceDetailsByConfigRule",
]
MOTO_TAKEN_OVER: list[str] = [
    "PutConfigRule",
    "DescribeConfigRules",
    "DeleteConfigRule",
    "DescribeConfigurationRecorders",
    "DescribeConfigurationRecorderStatus",
    "StartConfigurationRecorder",
    "StopConfigurationRecorder",
]


@dataclass
class Recorder:
    """The region's configuration recorder, as DescribeConfigurationRecorders/Status report it."""

    name: str
    arn: str
    role_arn: str
    recording: bool
    resource_types: tuple[str, ...]  # empty: every supported type
    last_status_change: datetime
    last_start: datetime | None = None
    last_stop: datetime | None = None

    def records(self, resource_type: str) -> bool:
        return self.recording and (not self.resource_types or resource_type in self.resource_types)


@dataclass(frozen=True)
class Result:
    """One resource's evaluation result."""

    resource_type: str
    resource_id: str
    compliance: str
    ordering: datetime  # when the configuration item last changed


@dataclass
class Evaluation:
    invoked: datetime
    completes: datetime
    results: dict[str, Result]


@dataclass
class Rule:
    name: str
    rule_id: str
    arn: str
    source: dict[str, Any]
    scope: dict[str, Any] | None
    input_parameters: str | None
    description: str | None
    maximum_execution_frequency: str | None
    first_activated: datetime
    results: dict[str, Result] = field(default_factory=dict)
    running: Evaluation | None = None
    last_invocation: datetime | None = None
    last_evaluation: datetime | None = None
    results_invoked: datetime | None = None  # the invocation whose results are visible
    last_start_request: datetime | None = None

    @property
    def source_identifier(self) -> str:
        return str(self.source.get("SourceIdentifier", ""))


@dataclass
class RegionConfig:
    recorder: Recorder | None
    rules: dict[str, Rule] = field(default_factory=dict)


def _regions(world: World) -> dict[tuple[str, str], RegionConfig]:
    regions: dict[tuple[str, str], RegionConfig] = world.extra.setdefault(STATE_KEY, {})
    return regions


def region_config(world: World, account_id: str, region: str) -> RegionConfig:
    """The Config state of one account and region (created from the scenario on first use), brought up to now."""
    regions = _regions(world)
    state = regions.get((account_id, region))
    if state is None:
        settings = world.scenario.config
        mode = settings.recorder_by_region.get(region, settings.recorder)
        recorder = None
        if mode != "none":
            now = world.now()
            recorder = Recorder(
                name=RECORDER_NAME,
                arn=f"arn:aws:config:{region}:{account_id}:configuration-recorder/{RECORDER_NAME}/sandbox",
                role_arn=f"arn:aws:iam::{account_id}:role/aws-service-role/config.amazonaws.com/AWSServiceRoleForConfig",
                recording=mode == "recording",
                resource_types=settings.recorded_resource_types,
                last_status_change=now,
                last_start=now if mode == "recording" else None,
            )
        state = regions[(account_id, region)] = RegionConfig(recorder)
    _catch_up(world, account_id, region, state)
    return state


def _catch_up(world: World, account_id: str, region: str, state: RegionConfig) -> None:
    """Complete the evaluations that are due, and start the scenario's periodic ones."""
    now = world.now()
    period = world.scenario.config.periodic_evaluation_minutes
    for rule in state.rules.values():
        _complete_if_due(rule, now)
        if period and rule.running is None and rule.last_invocation is not None:
            step = timedelta(minutes=period)
            ticks = int((now - rule.last_invocation) / step)
            if ticks >= 1:
                _start(world, account_id, region, state, rule, rule.last_invocation + ticks * step)
                _complete_if_due(rule, now)


def _complete_if_due(rule: Rule, now: datetime) -> None:
    running = rule.running
    if running is not None and running.completes <= now:
        rule.results = running.results
        rule.last_evaluation = running.completes
        rule.results_invoked = running.invoked
        rule.running = None


def _start(world: World, account_id: str, region: str, state: RegionConfig, rule: Rule, invoked: datetime) -> None:
    """Invoke the rule at `invoked`: its results are the state now, visible evaluation_seconds later."""
    seconds = world.scenario.config.evaluation_seconds
    rule.running = Evaluation(
        invoked=invoked,
        completes=invoked + timedelta(seconds=seconds),
        results=_evaluate(world, account_id, region, state, rule),
    )
    rule.last_invocation = invoked


def _in_scope(rule: Rule, resource_type: str, resource_id: str) -> bool:
    scope = rule.scope or {}
    types = scope.get("ComplianceResourceTypes") or []
    if types and resource_type not in types:
        return False
    wanted = scope.get("ComplianceResourceId")
    return not wanted or wanted == resource_id


def _evaluate(world: World, account_id: str, region: str, state: RegionConfig, rule: Rule) -> dict[str, Result]:
    if rule.source.get("Owner") != "AWS" or rule.source_identifier != PATCH_RULE:
        return {}  # only the patch compliance rule is modelled
    recorder = state.recorder
    if recorder is None or not recorder.records(PATCH_COMPLIANCE):
        return dict(rule.results)  # no configuration item changes: the previous results stand
    results: dict[str, Result] = {}
    for instance_id, instance in sorted(world.instances(account_id, region).items()):
        report = instance.report
        if not instance.registered or report is None:
            continue  # no patch state reported: Config has no PatchCompliance item for it
        resource_id = PATCH_RESOURCE_PREFIX + instance_id
        if not _in_scope(rule, PATCH_COMPLIANCE, resource_id):
            continue
        compliance = "COMPLIANT" if patching.is_compliant(report) else "NON_COMPLIANT"
        results[resource_id] = Result(PATCH_COMPLIANCE, resource_id, compliance, report.end)
    return results


# -- errors ------------------------------------------------------------------------------------


def _no_such_rule(name: str) -> AwsApiError:
    return AwsApiError(
        "NoSuchConfigRuleException",
        f"The ConfigRule '{name}' provided in the request is invalid. Please check the configRule name",
    )


def _invalid(message: str) -> AwsApiError:
    return AwsApiError("InvalidParameterValueException", message)


def _rule(state: RegionConfig, name: str) -> Rule:
    rule = state.rules.get(name)
    if rule is None:
        raise _no_such_rule(name)
    return rule


def _named(state: RegionConfig, names: list[str] | None) -> list[Rule]:
    if names:
        return [_rule(state, name) for name in names]
    return [state.rules[name] for name in sorted(state.rules)]


def _page(items: list[Any], params: dict[str, Any], limit: int) -> tuple[list[Any], dict[str, Any]]:
    start = decode_token(params["NextToken"]) if params.get("NextToken") else 0
    page = items[start : start + limit]
    more = start + limit < len(items)
    return page, ({"NextToken": encode_token(start + limit)} if more else {})


# -- rules -------------------------------------------------------------------------------------


def _check_source(rule: dict[str, Any]) -> None:
    source = rule["Source"]
    if source.get("Owner") != "AWS":
        if not source.get("SourceIdentifier") and source.get("Owner") == "CUSTOM_LAMBDA":
            raise _invalid("SourceIdentifier is required for a CUSTOM_LAMBDA rule")
        return
    identifier = source.get("SourceIdentifier", "")
    managed = MANAGED_RULES_CONSTRAINTS.get(identifier)
    if managed is None:
        raise _invalid(
            f"The sourceIdentifier {identifier} is invalid.  Please refer to the documentation for a list of "
            "valid sourceIdentifiers that can be used when AWS is the Owner."
        )
    raw = rule.get("InputParameters")
    try:
        given = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise _invalid(f"Invalid json {raw} passed in the InputParameters field") from exc
    if not isinstance(given, dict):
        raise _invalid(f"Invalid json {raw} passed in the InputParameters field")
    allowed = {p["Name"] for p in managed["Parameters"]}
    if not set(given) <= allowed:
        raise _invalid(f"Unknown parameters provided in the inputParameters: {raw}")
    required = {p["Name"] for p in managed["Parameters"] if not p["Optional"]} - set(given)
    if required:
        raise _invalid(f"The required parameter [{', '.join(sorted(required))}] is not present in the inputParameters")


def put_config_rule(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Create a rule (it is evaluated at once) or update one found by name, ARN or id."""
    state = region_config(world, ctx.account_id, ctx.region)
    raw = params["ConfigRule"]
    if state.recorder is None:
        raise AwsApiError(
            "NoAvailableConfigurationRecorderException",
            "There are no configuration recorders available to provide the configuration item change "
            "notification for the config rule.",
        )
    if raw.get("ConfigRuleState", "ACTIVE") != "ACTIVE":
        raise _invalid(f"The ConfigRuleState {raw['ConfigRuleState']} is invalid. Only ACTIVE is permitted")
    if raw.get("CreatedBy"):
        raise _invalid("AWS Config populates the CreatedBy field for ServiceLinkedConfigRule.")
    _check_source(raw)
    name = raw.get("ConfigRuleName")
    existing = state.rules.get(name) if name else None
    if existing is None and (raw.get("ConfigRuleArn") or raw.get("ConfigRuleId")):
        existing = next(
            (
                r
                for r in state.rules.values()
                if raw.get("ConfigRuleArn") == r.arn or raw.get("ConfigRuleId") == r.rule_id
            ),
            None,
        )
        if existing is None or (name and name != existing.name):
            raise _invalid(
                "ConfigRule Arn and Id can not be specified when creating a new ConfigRule. "
                "ConfigRule Arn and Id are generated by the service."
            )
    now = world.now()
    if existing is None:
        if not name:
            raise _invalid("One or more identifiers needs to be provided. Provide Name or Id or Arn")
        if len(state.rules) >= MAX_RULES:
            raise AwsApiError(
                "MaxNumberOfConfigRulesExceededException",
                f"Failed to put config rule '{name}' because the maximum number of config rules: "
                f"{MAX_RULES} is reached.",
            )
        rule_id = f"config-rule-{world.rng.getrandbits(24):06x}"  # the scenario's seed makes ids repeatable
        existing = state.rules[name] = Rule(
            name=name,
            rule_id=rule_id,
            arn=f"arn:aws:config:{ctx.region}:{ctx.account_id}:config-rule/{rule_id}",
            source=dict(raw["Source"]),
            scope=raw.get("Scope"),
            input_parameters=raw.get("InputParameters"),
            description=raw.get("Description"),
            maximum_execution_frequency=raw.get("MaximumExecutionFrequency"),
            first_activated=now,
        )
    else:
        existing.source = dict(raw["Source"])
        existing.scope = raw.get("Scope")
        existing.input_parameters = raw.get("InputParameters")
        existing.description = raw.get("Description")
        existing.maximum_execution_frequency = raw.get("MaximumExecutionFrequency")
    if existing.running is None:
        _start(world, ctx.account_id, ctx.region, state, existing, now)
    return {}


def _rule_entry(rule: Rule) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "ConfigRuleName": rule.name,
        "ConfigRuleArn": rule.arn,
        "ConfigRuleId": rule.rule_id,
        "Source": rule.source,
        "ConfigRuleState": "EVALUATING" if rule.running is not None else "ACTIVE",
        "EvaluationModes": [{"Mode": "DETECTIVE"}],
    }
    optional = {
        "Description": rule.description,
        "Scope": rule.scope,
        "InputParameters": rule.input_parameters,
        "MaximumExecutionFrequency": rule.maximum_execution_frequency,
    }
    entry.update({key: value for key, value in optional.items() if value is not None})
    return entry


def describe_config_rules(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """The named rules (NoSuchConfigRuleException for an unknown one) or every rule, 25 a page."""
    state = region_config(world, ctx.account_id, ctx.region)
    rules = _named(state, params.get("ConfigRuleNames"))
    mode = (params.get("Filters") or {}).get("EvaluationMode")
    if mode == "PROACTIVE":
        rules = []  # the sandbox's rules evaluate detectively only
    page, more = _page(rules, params, RULES_PAGE)
    return {"ConfigRules": [_rule_entry(rule) for rule in page], **more}


def delete_config_rule(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    state = region_config(world, ctx.account_id, ctx.region)
    del state.rules[_rule(state, params["ConfigRuleName"]).name]
    return {}


def start_config_rules_evaluation(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """Invoke each named rule now; refused while one is evaluating or was started less than a minute ago."""
    state = region_config(world, ctx.account_id, ctx.region)
    rules = [_rule(state, name) for name in params.get("ConfigRuleNames") or []]
    if not rules:
        raise _invalid("ConfigRuleNames must name at least one rule")
    now = world.now()
    for rule in rules:
        recent = rule.last_start_request is not None and now - rule.last_start_request < START_INTERVAL
        if rule.running is not None or recent:
            raise AwsApiError(
                "LimitExceededException",
                f"An evaluation of the rule {rule.name} is in progress or was started less than a minute ago. "
                "Try again later.",
            )
    for rule in rules:
        rule.last_start_request = now
        _start(world, ctx.account_id, ctx.region, state, rule, now)
    return {}


def describe_config_rule_evaluation_status(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """When each rule was last invoked (started) and last evaluated (finished)."""
    state = region_config(world, ctx.account_id, ctx.region)
    rules = _named(state, params.get("ConfigRuleNames"))
    page, more = _page(rules, params, params.get("Limit") or DEFAULT_STATUS_LIMIT)
    statuses = []
    for rule in page:
        status: dict[str, Any] = {
            "ConfigRuleName": rule.name,
            "ConfigRuleArn": rule.arn,
            "ConfigRuleId": rule.rule_id,
            "FirstActivatedTime": rule.first_activated,
            "FirstEvaluationStarted": rule.last_invocation is not None,
        }
        if rule.last_invocation is not None:
            status["LastSuccessfulInvocationTime"] = rule.last_invocation
        if rule.last_evaluation is not None:
            status["LastSuccessfulEvaluationTime"] = rule.last_evaluation
        statuses.append(status)
    return {"ConfigRulesEvaluationStatus": statuses, **more}


def get_compliance_details_by_config_rule(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """The rule's last completed evaluation: one result per resource, filtered by compliance type, paged."""
    state = region_config(world, ctx.account_id, ctx.region)
    rule = _rule(state, params["ConfigRuleName"])
    wanted = params.get("ComplianceTypes") or []
    if "INSUFFICIENT_DATA" in wanted:
        raise _invalid("INSUFFICIENT_DATA cannot be used as a ComplianceType for filtering results.")
    results = [r for _, r in sorted(rule.results.items()) if not wanted or r.compliance in wanted]
    page, more = _page(results, params, params.get("Limit") or DEFAULT_DETAILS_LIMIT)
    recorded, invoked = rule.last_evaluation, rule.results_invoked
    entries = []
    for result in page:
        entry: dict[str, Any] = {
            "EvaluationResultIdentifier": {
                "EvaluationResultQualifier": {
                    "ConfigRuleName": rule.name,
                    "ResourceType": result.resource_type,
                    "ResourceId": result.resource_id,
                    "EvaluationMode": "DETECTIVE",
                },
                "OrderingTimestamp": result.ordering,
            },
            "ComplianceType": result.compliance,
        }
        if recorded is not None:
            entry["ResultRecordedTime"] = recorded
        if invoked is not None:
            entry["ConfigRuleInvokedTime"] = invoked
        entries.append(entry)
    return {"EvaluationResults": entries, **more}


# -- the configuration recorder ----------------------------------------------------------------


def _recorders(state: RegionConfig, names: list[str] | None) -> list[Recorder]:
    found = [state.recorder] if state.recorder is not None else []
    for name in names or []:
        if not any(r.name == name for r in found):
            raise AwsApiError(
                "NoSuchConfigurationRecorderException",
                f"Cannot find configuration recorder with the specified name '{name}'.",
            )
    return [r for r in found if not names or r.name in names]


def describe_configuration_recorders(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    state = region_config(world, ctx.account_id, ctx.region)
    recorders = []
    for recorder in _recorders(state, params.get("ConfigurationRecorderNames")):
        all_supported = not recorder.resource_types
        recorders.append(
            {
                "arn": recorder.arn,
                "name": recorder.name,
                "roleARN": recorder.role_arn,
                "recordingGroup": {
                    "allSupported": all_supported,
                    "includeGlobalResourceTypes": False,
                    "resourceTypes": list(recorder.resource_types),
                    "exclusionByResourceTypes": {"resourceTypes": []},
                    "recordingStrategy": {
                        "useOnly": "ALL_SUPPORTED_RESOURCE_TYPES" if all_supported else "INCLUSION_BY_RESOURCE_TYPES"
                    },
                },
                "recordingMode": {"recordingFrequency": "CONTINUOUS", "recordingModeOverrides": []},
                "recordingScope": "PAID",
            }
        )
    return {"ConfigurationRecorders": recorders}


def describe_configuration_recorder_status(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    state = region_config(world, ctx.account_id, ctx.region)
    statuses = []
    for recorder in _recorders(state, params.get("ConfigurationRecorderNames")):
        status: dict[str, Any] = {
            "arn": recorder.arn,
            "name": recorder.name,
            "recording": recorder.recording,
            "lastStatus": "Success" if recorder.recording else "NotApplicable",
            "lastStatusChangeTime": recorder.last_status_change,
        }
        if recorder.last_start is not None:
            status["lastStartTime"] = recorder.last_start
        if recorder.last_stop is not None:
            status["lastStopTime"] = recorder.last_stop
        statuses.append(status)
    return {"ConfigurationRecordersStatus": statuses}


def _switch_recorder(world: World, ctx: RequestContext, params: dict[str, Any], recording: bool) -> dict[str, Any]:
    state = region_config(world, ctx.account_id, ctx.region)
    (recorder,) = _recorders(state, [params["ConfigurationRecorderName"]])
    now = world.now()
    if recorder.recording != recording:
        recorder.recording = recording
        recorder.last_status_change = now
        if recording:
            recorder.last_start = now
        else:
            recorder.last_stop = now
    return {}


def start_configuration_recorder(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _switch_recorder(world, ctx, params, True)


def stop_configuration_recorder(world: World, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _switch_recorder(world, ctx, params, False)


HANDLERS: dict[tuple[str, str], Handler] = {
    ("config", "PutConfigRule"): put_config_rule,
    ("config", "DescribeConfigRules"): describe_config_rules,
    ("config", "DeleteConfigRule"): delete_config_rule,
    ("config", "StartConfigRulesEvaluation"): start_config_rules_evaluation,
    ("config", "DescribeConfigRuleEvaluationStatus"): describe_config_rule_evaluation_status,
    ("config", "GetComplianceDetailsByConfigRule"): get_compliance_details_by_config_rule,
    ("config", "DescribeConfigurationRecorders"): describe_configuration_recorders,
    ("config", "DescribeConfigurationRecorderStatus"): describe_configuration_recorder_status,
    ("config", "StartConfigurationRecorder"): start_configuration_recorder,
    ("config", "StopConfigurationRecorder"): stop_configuration_recorder,
}
