"""The staging rehearsal: which production instances install mode patches, the profiles staged for them,
the CloudFormation template of their replicas, and the replicas' results (core.approval_request tells the
approver).

A *profile* is what a replica stands for: the production instances sharing (account, region, platform,
AMI, instance family, patch group). Each staged profile gets one replica, which installs the profile's
pinned patch list (the distinct outstanding patches of its instances) before any production wave.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence, Set
from typing import Any, Final

import pandas as pd
import yaml

from patchcycle.core.frames import typed_frame
from patchcycle.core.plan import OUTSTANDING_STATES, split_cve_ids

PRODUCTION_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_id": "str",
    "platform_name": "str",
    "platform_type": "str",
    "image_id": "str",
    "instance_type": "str",
    "instance_family": "str",
    "patch_group": "str",
    "availability_zone": "str",
    "auto_scaling_group": "str",  # "" when the instance is in no Auto Scaling group
    "launch_template": "str",
    "launch_template_version": "str",
    "group_launch_template_version": "str",  # the version the group launches now (inventory)
    "group_image_id": "str",  # that version's AMI: what the immutable path bakes
    "patch_ids": "str",  # the instance's pinned patches: distinct outstanding patch ids, sorted, ";"-joined
    "pinned": "int64",
}

# The production instances once assigned their staging profile (install/production).
PLANNED_PRODUCTION_COLUMNS: Final[Mapping[str, str]] = {**PRODUCTION_COLUMNS, "profile_id": "str"}

PROFILE_KEY: Final = ("account_id", "region", "platform_name", "image_id", "instance_family", "patch_group")

PROFILE_COLUMNS: Final[Mapping[str, str]] = {
    "profile_id": "str",  # p01, p02, ...: unique within the run, safe in a CloudFormation logical id
    "account_id": "str",
    "region": "str",
    "platform_name": "str",
    "platform_type": "str",
    "image_id": "str",
    "instance_family": "str",
    "instance_type": "str",  # the most common type among its instances (ties: the smallest)
    "patch_group": "str",
    "patch_ids": "str",  # distinct pinned patch ids of its instances, sorted, ";"-joined
    "production_instances": "int64",
    "staged": "bool",  # within the per-(account, region) staging cap
}

STAGING_RESULT_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "profile_id": "str",
    "instance_id": "str",
    "patch_group": "str",
    "platform_name": "str",
    "patch_ids": "str",  # planned (pinned) patch ids, ";"-joined
    "install_status": "str",  # SSM invocation status of the install; "" if not sent
    "installed": "int64",  # planned patches reported INSTALLED, INSTALLED_OTHER or INSTALLED_PENDING_REBOOT
    "not_installed": "str",  # planned patch ids missing, failed or not reported, ";"-joined
    "health_status": "str",  # SSM invocation status of the health check; "" if not run
    "health_output": "str",  # the end of its stderr (else stdout), at most HEALTH_OUTPUT_LIMIT characters
    "passed": "bool",
    "reason": "str",  # why it did not pass; "" when it did
}

INSTALLED_STATES: Final = frozenset({"INSTALLED", "INSTALLED_OTHER", "INSTALLED_PENDING_REBOOT"})
HEALTH_OUTPUT_LIMIT: Final = 500
_REASON_EXCERPT: Final = 200
# The per-profile parameters of the base template, replaced by each profile's values.
PROFILE_PARAMETERS: Final = ("ImageId", "InstanceType", "PatchGroup", "ProfileId")
BASE_RESOURCE: Final = "StagingInstance"
STACK_PREFIX: Final = "patchcycle-staging-"
_STACK_NAME_MAX: Final = 128


def instance_family(instance_type: str) -> str:
    """The family of an instance type: "m6i.large" -> "m6i" (the whole string when it has no ".")."""
    return instance_type.split(".", 1)[0]


def production_instances(inventory: pd.DataFrame, plan: pd.DataFrame, scan_failures: Collection[str]) -> pd.DataFrame:
    """The instances install mode patches (PRODUCTION_COLUMNS), sorted by account, region, id.

    In-scope, patchable EC2 instances with at least one outstanding plan row, whose scan did not fail.
    Their pinned patches are the distinct patch ids of those rows.
    """
    if "in_scope" not in inventory.columns:
        raise ValueError("inventory has no in_scope column: apply the scope first (scope.apply_scope)")
    outstanding = plan[(plan["resource_type"] == "ec2") & plan["state"].isin(OUTSTANDING_STATES)]
    pinned: dict[tuple[str, str, str], set[str]] = {}
    plan_group: dict[tuple[str, str, str], str] = {}
    for row in outstanding[["account_id", "region", "resource_id", "patch_id", "patch_group"]].itertuples(index=False):
        key = (str(row.account_id), str(row.region), str(row.resource_id))
        pinned.setdefault(key, set()).add(str(row.patch_id))
        plan_group[key] = plan_group.get(key) or str(row.patch_group)
    candidates = inventory[inventory["in_scope"] & inventory["patchable"] & (inventory["resource_type"] == "ec2")]
    rows = []
    for resource in candidates.to_dict("records"):
        key = (str(resource["account_id"]), str(resource["region"]), str(resource["resource_id"]))
        if key not in pinned or key[2] in scan_failures:
            continue
        patch_ids = sorted(pinned[key])
        rows.append(
            {
                **{column: resource[column] for column in PRODUCTION_COLUMNS if column in resource},
                # The patch state's group is the one Patch Manager used; the tag is the fallback.
                "patch_group": plan_group[key] or str(resource["patch_group"]),
                "instance_family": instance_family(str(resource["instance_type"])),
                "patch_ids": ";".join(patch_ids),
                "pinned": len(patch_ids),
            }
        )
    frame = typed_frame(rows, PRODUCTION_COLUMNS)
    return frame.sort_values(["account_id", "region", "resource_id"], ignore_index=True)


def most_common(values: Sequence[str]) -> str:
    """The most common value; ties go to the smallest, so the choice is stable."""
    counts = Counter(values)
    return min(counts, key=lambda value: (-counts[value], value))


def staging_profiles(production: pd.DataFrame, cap_per_target: int) -> pd.DataFrame:
    """One row per profile (PROFILE_COLUMNS); the `cap_per_target` largest of each (account, region) are staged.

    Profiles are ordered by account, region, production instances (most first), then their key, and
    numbered p01, p02, ... across the run in that order.
    """
    if cap_per_target < 0:
        raise ValueError(f"cap_per_target: must be 0 or more, got {cap_per_target}")
    rows: list[dict[str, Any]] = []
    for key, members in production.groupby(list(PROFILE_KEY), sort=True):
        patch_ids = sorted({pid for joined in members["patch_ids"] for pid in split_cve_ids(str(joined))})
        rows.append(
            {
                **dict(zip(PROFILE_KEY, map(str, key), strict=True)),
                "platform_type": most_common([str(value) for value in members["platform_type"]]),
                "instance_type": most_common([str(value) for value in members["instance_type"]]),
                "patch_ids": ";".join(patch_ids),
                "production_instances": len(members),
            }
        )
    rows.sort(
        key=lambda row: (row["account_id"], row["region"], -row["production_instances"], *map(row.get, PROFILE_KEY))
    )
    width = max(2, len(str(len(rows))))
    staged_in: Counter[tuple[str, str]] = Counter()
    for number, row in enumerate(rows, start=1):
        target = (row["account_id"], row["region"])
        row["profile_id"] = f"p{number:0{width}d}"
        row["staged"] = staged_in[target] < cap_per_target
        staged_in[target] += 1
    return typed_frame(rows, PROFILE_COLUMNS)


def assign_profiles(production: pd.DataFrame, profiles: pd.DataFrame) -> pd.DataFrame:
    """The production instances with their profile's `profile_id`; ValueError if an instance has no profile."""
    ids = profiles[[*PROFILE_KEY, "profile_id"]]
    assigned = production.drop(columns="profile_id", errors="ignore").merge(ids, on=list(PROFILE_KEY), how="left")
    orphans = assigned.loc[assigned["profile_id"].isna(), "resource_id"]
    if len(orphans):
        raise ValueError(f"{len(orphans)} production instance(s) match no profile: {sorted(orphans)[:10]}")
    return assigned.astype({"profile_id": "str"})


def override_list_yaml(patch_ids: Sequence[str]) -> str:
    """An AWS-RunPatchBaseline InstallOverrideList document: exactly these patches are installed."""
    ids = list(dict.fromkeys(pid for pid in patch_ids if pid))
    if not ids:
        # An empty override list would make the install a no-op that still reports Success.
        raise ValueError("patch_ids: an install override list needs at least one patch id")
    return yaml.safe_dump({"patches": [{"id": pid} for pid in ids]}, default_flow_style=False, sort_keys=False)


def stack_name(run_id: str) -> str:
    """The staging stack's name for a run: "patchcycle-staging-" + the run id made CloudFormation-safe.

    Characters outside [-a-zA-Z0-9] become "-"; a name over 128 characters is cut and ends with a
    hash of the whole run id, so two long run ids sharing a prefix still get different stacks.
    """
    if not run_id:
        raise ValueError("run_id: must not be empty")
    name = STACK_PREFIX + re.sub(r"[^-a-zA-Z0-9]", "-", run_id)
    if len(name) <= _STACK_NAME_MAX:
        return name
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    return f"{name[: _STACK_NAME_MAX - len(digest) - 1]}-{digest}"


def instance_logical_id(profile_id: str) -> str:
    """The CloudFormation logical id of a profile's replica: "p01" -> "StagingInstanceP01"."""
    safe = re.sub(r"[^A-Za-z0-9]", "", profile_id)
    if not safe:
        raise ValueError(f"profile_id: {profile_id!r} has no letter or digit for a logical id")
    return BASE_RESOURCE + safe[0].upper() + safe[1:]


def _substitute(node: Any, values: Mapping[str, str]) -> Any:
    """`node` with {"Ref": name} and "${name}" in Fn::Sub replaced by values[name] (a new object)."""
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    if not isinstance(node, Mapping):
        return node
    if set(node) == {"Ref"} and node["Ref"] in values:
        return values[node["Ref"]]
    if set(node) == {"Fn::Sub"}:
        sub = node["Fn::Sub"]
        text, own = (sub[0], dict(sub[1])) if isinstance(sub, list) else (sub, {})
        for name, value in values.items():
            if name not in own:  # a Fn::Sub variable of the same name shadows the parameter
                text = text.replace("${" + name + "}", value)
        if own:
            return {"Fn::Sub": [text, _substitute(own, values)]}
        return text if "${" not in text else {"Fn::Sub": text}
    return {key: _substitute(value, values) for key, value in node.items()}


def _references(node: Any, names: Set[str]) -> set[str]:
    """Which of `names` `node` still refers to, by Ref or inside a Fn::Sub string."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= _references(item, names)
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if key == "Ref" and value in names:
                found.add(str(value))
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found |= {name for name in names if "${" + name + "}" in str(text)}
            found |= _references(value, names)
    return found


def staging_template(base: Mapping[str, Any], profiles: pd.DataFrame) -> dict[str, Any]:
    """The staging stack's template: one replica of the base's StagingInstance per staged profile.

    base: include/cloudformation/staging.yaml, parsed. profiles: PROFILE_COLUMNS rows of one (account,
    region); rows with staged False are left out. Each replica is named by instance_logical_id, carries
    its profile's values instead of the per-profile parameters (which are removed), and has an output of
    the same name giving its instance id. `base` is not modified.
    """
    resources = base.get("Resources")
    if not isinstance(resources, Mapping) or BASE_RESOURCE not in resources:
        raise ValueError(f"base template: no {BASE_RESOURCE} resource to copy")
    parameters = base.get("Parameters")
    missing = [name for name in PROFILE_PARAMETERS if not isinstance(parameters, Mapping) or name not in parameters]
    if missing:
        raise ValueError(f"base template: missing parameter(s) {missing}")
    if "staged" in profiles.columns:
        profiles = profiles[profiles["staged"]]
    if profiles.empty:
        raise ValueError("profiles: no staged profile, so no instance to create")
    targets = sorted(set(zip(profiles["account_id"], profiles["region"], strict=True)))
    if len(targets) > 1:
        raise ValueError(f"profiles: a stack lives in one account and region, got {targets}")
    template = copy.deepcopy(dict(base))
    template["Parameters"] = {k: v for k, v in template["Parameters"].items() if k not in PROFILE_PARAMETERS}
    template["Resources"] = {k: v for k, v in template["Resources"].items() if k != BASE_RESOURCE}
    outputs = {k: v for k, v in (template.get("Outputs") or {}).items() if k != BASE_RESOURCE}
    base_output = dict((base.get("Outputs") or {}).get(BASE_RESOURCE) or {})
    for profile in profiles.to_dict("records"):
        logical_id = instance_logical_id(str(profile["profile_id"]))
        if logical_id in template["Resources"]:
            raise ValueError(f"profiles: logical id {logical_id} is not unique (profile {profile['profile_id']})")
        values = {
            "ImageId": str(profile["image_id"]),
            "InstanceType": str(profile["instance_type"]),
            "PatchGroup": str(profile["patch_group"]),
            "ProfileId": str(profile["profile_id"]),
        }
        resource = _substitute(resources[BASE_RESOURCE], values)
        if not values["PatchGroup"]:
            # Production instances without a patch group carry no such tag; an empty tag is still a tag.
            tags = resource.get("Properties", {}).get("Tags", [])
            resource["Properties"]["Tags"] = [tag for tag in tags if tag.get("Key") != "PatchGroup"]
        template["Resources"][logical_id] = resource
        outputs[logical_id] = {**base_output, "Value": {"Ref": logical_id}}
    template["Outputs"] = outputs
    leftover = _references(template, set(PROFILE_PARAMETERS))
    if leftover:
        raise ValueError(f"base template: parameter(s) {sorted(leftover)} used outside {BASE_RESOURCE}")
    return template


def _excerpt(text: Any, limit: int) -> str:
    """The end of a command's output (where errors usually are), at most `limit` characters."""
    cleaned = " ".join(str(text or "").split())
    return cleaned if len(cleaned) <= limit else "..." + cleaned[-(limit - 3) :]


def _stderr(invocation: Mapping[str, Any]) -> str:
    return str(invocation.get("StandardErrorContent") or invocation.get("stderr") or "")


def _stdout(invocation: Mapping[str, Any]) -> str:
    return str(invocation.get("StandardOutputContent") or invocation.get("Output") or invocation.get("stdout") or "")


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def _staging_result(
    row: Mapping[str, Any],
    install: Mapping[str, Any] | None,
    patches: Sequence[Mapping[str, Any]] | None,
    health: Mapping[str, Any] | None,
) -> dict[str, Any]:
    planned = split_cve_ids(str(row["patch_ids"]))
    states = {str(item.get("KBId", "")): str(item.get("State", "")) for item in patches or []}
    not_installed = [pid for pid in planned if states.get(pid) not in INSTALLED_STATES]
    install_status = str((install or {}).get("Status", ""))
    health_status = str((health or {}).get("Status", ""))
    health_output = _excerpt(_stderr(health or {}) or _stdout(health or {}), HEALTH_OUTPUT_LIMIT)
    reasons = []
    if install is None:
        reasons.append("install not sent")
    elif install_status != "Success":
        detail = _excerpt(_stderr(install) or install.get("StatusDetails", ""), _REASON_EXCERPT)
        reasons.append(f"install {install_status or 'status unknown'}" + (f": {detail}" if detail else ""))
    if not_installed:
        listed = ", ".join(not_installed[:10]) + (
            f" and {len(not_installed) - 10} more" if len(not_installed) > 10 else ""
        )
        reasons.append(f"{_plural(len(not_installed), 'planned patch', 'planned patches')} not installed: {listed}")
    if health is None:
        reasons.append("health check not run")
    elif health_status != "Success":
        code = health.get("ResponseCode")
        exit_code = f" (exit {code})" if code is not None and code != "" else ""
        excerpt = _excerpt(health_output, _REASON_EXCERPT)
        reasons.append(
            f"health check {health_status or 'status unknown'}{exit_code}" + (f": {excerpt}" if excerpt else "")
        )
    return {
        **{column: row[column] for column in STAGING_RESULT_COLUMNS if column in row},
        "install_status": install_status,
        "installed": len(planned) - len(not_installed),
        "not_installed": ";".join(not_installed),
        "health_status": health_status,
        "health_output": health_output,
        "passed": not reasons,
        "reason": "; ".join(reasons),
    }


def staging_results(
    staged: pd.DataFrame,
    install: Mapping[str, Mapping[str, Any]],
    patches: Mapping[str, Sequence[Mapping[str, Any]]],
    health: Mapping[str, Mapping[str, Any]],
) -> pd.DataFrame:
    """One STAGING_RESULT_COLUMNS row per replica: did its install and health check pass?

    staged: one row per replica (profile columns + instance_id). install and health: {instance id: SSM
    invocation} (Status, StatusDetails, ResponseCode, StandardErrorContent/StandardOutputContent or
    stderr/Output); a replica that never became managed is passed as {"Status": "Undeliverable",
    "StatusDetails": why}. patches: {instance id: DescribeInstancePatches items} read after the install.
    Passed = install Success, every planned patch installed (pending reboot counts) and health Success.
    """
    rows = [
        _staging_result(
            row,
            install.get(str(row["instance_id"])),
            patches.get(str(row["instance_id"])),
            health.get(str(row["instance_id"])),
        )
        for row in staged.to_dict("records")
    ]
    frame = typed_frame(rows, STAGING_RESULT_COLUMNS)
    return frame.sort_values(["account_id", "region", "profile_id"], ignore_index=True)


def staging_summary(results: pd.DataFrame) -> dict[str, Any]:
    """Counts over staging results, and each failed replica with its reason."""
    failed = results[~results["passed"]]
    patch_ids = {pid for joined in results["patch_ids"] for pid in split_cve_ids(str(joined))}
    keys = ("account_id", "region", "profile_id", "instance_id", "reason")
    return {
        "instances": len(results),
        "passed": int(results["passed"].sum()),
        "failed": len(failed),
        "patches": len(patch_ids),
        "failures": [{key: str(row[key]) for key in keys} for row in failed.to_dict("records")],
    }
