"""The approval request: the Markdown a person reads at the gate between staging and production.

It answers what the approver has to weigh: did staging pass, what will be installed (the pinned patches by
operating system, with their severities and CVEs, the critical ones by name), where (accounts, regions and
patch groups, with instance counts), how (the waves and the halt threshold), and where to look further (links
that open in a browser).

The body is a headline and a sequence of sections. Each section is a small function of `ApprovalInputs` that
returns its Markdown lines, or no lines when it has nothing to say. A stage that brings something else to
decide on (RDS maintenance, Auto Scaling groups) adds its data to `ApprovalInputs` (a field with a default) and
its function to `SECTIONS`; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

import pandas as pd

from patchcycle.core.frames import concat_frames
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.rds_approval import rds_approval_section, rds_rehearsals_passed
from patchcycle.core.rds_rollout import REHEARSAL_RESULT_COLUMNS
from patchcycle.core.staging import staging_summary

# Severities as vendors rate them (Amazon Linux and Windows: Critical/Important/Medium or Moderate/Low; Ubuntu:
# Critical/High/Medium/Low), most severe first. A patch without one (a bug fix) is "Unrated".
SEVERITY_ORDER: Final = ("Critical", "High", "Important", "Medium", "Moderate", "Low", "Informational")
UNRATED: Final = "Unrated"
# The critical patches are listed by name up to this many; the rest are counted.
MAX_CRITICAL_LISTED: Final = 15
MAX_CVES_LISTED: Final = 3
MAX_TITLE: Final = 80  # a patch title is cut here (Windows rollups run to 110 characters)
_KEY: Final = ["account_id", "region", "resource_id"]


@dataclass(frozen=True)
class ApprovalInputs:
    """What the gate knows, as the run's artifacts hold it (one frame per table, every target together)."""

    plan: pd.DataFrame  # plan.PLAN_COLUMNS: each (resource, outstanding patch) with its severity, CVEs, title
    production: pd.DataFrame  # staging.PLANNED_PRODUCTION_COLUMNS: the instances, their pinned patches, profiles
    profiles: pd.DataFrame  # staging.PROFILE_COLUMNS: what each profile stands for, and whether it was staged
    waves: pd.DataFrame  # waves.WAVE_PLAN_COLUMNS: each staged production instance's wave
    staging: pd.DataFrame  # staging.STAGING_RESULT_COLUMNS: each replica's install and health check
    stacks: Sequence[Mapping[str, Any]] = ()  # run_records.StackRecord fields, one per target
    halt_threshold: str = "0"
    staging_cap: int = 0  # staging replicas at most per (account, region)
    links: Sequence[tuple[str, str]] = ()  # (label, URL), in the order shown
    rds_plan: pd.DataFrame | None = None  # rds_plan.RDS_PLAN_COLUMNS: each DB instance's planned action
    rds_rehearsals: pd.DataFrame | None = None  # rds_rollout.REHEARSAL_RESULT_COLUMNS: each staging rehearsal
    rds_apply: str = "immediate"

    @property
    def rds_planned(self) -> bool:
        """Whether the rollout applies RDS maintenance too."""
        return self.rds_plan is not None and not self.rds_plan.empty

    @cached_property
    def pinned(self) -> pd.DataFrame:
        """The rollout's pinned patches (pinned_patches)."""
        return pinned_patches(self.production, self.waves, self.plan)

    @cached_property
    def members(self) -> pd.DataFrame:
        """The production instances in the wave plan (rollout)."""
        return rollout(self.production, self.waves)


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """ "1 instance", "3 instances"."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def cell(value: Any) -> str:
    """Text safe in a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|") or " "


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]


def severity_label(severity: str) -> str:
    """A vendor severity as the body spells it: "CRITICAL" and "critical" are "Critical"; none is "Unrated"."""
    text = str(severity or "").strip()
    if not text or text.lower() in {"none", "unspecified"}:
        return UNRATED
    return next((name for name in SEVERITY_ORDER if name.lower() == text.lower()), text.capitalize())


def _severity_rank(label: str) -> int:
    return SEVERITY_ORDER.index(label) if label in SEVERITY_ORDER else len(SEVERITY_ORDER) + (label == UNRATED)


PINNED_COLUMNS: Final = ("platform_name", "patch_id", "title", "severity", "cve_ids", "instances")


def rollout(production: pd.DataFrame, waves: pd.DataFrame) -> pd.DataFrame:
    """The production instances in the wave plan (their profile was staged), with their wave."""
    members = waves[[*_KEY, "wave"]]
    return production.merge(members, on=_KEY, how="inner")


def pinned_patches(production: pd.DataFrame, waves: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """One row per (operating system, pinned patch) of the rollout: its title, severity (as severity_label
    spells it), CVE ids (";"-joined) and how many instances install it, most severe first."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    facts = {
        (str(r.account_id), str(r.region), str(r.resource_id), str(r.patch_id)): r
        for r in plan[[*_KEY, "patch_id", "title", "severity", "cve_ids"]].itertuples(index=False)
    }
    for instance in rollout(production, waves).itertuples(index=False):
        for patch_id in split_cve_ids(str(instance.patch_ids)):
            key = (str(instance.platform_name), patch_id)
            fact = facts.get((str(instance.account_id), str(instance.region), str(instance.resource_id), patch_id))
            row = rows.setdefault(
                key, {"platform_name": key[0], "patch_id": patch_id, "title": "", "severity": "", "cves": set()}
            )
            row["instances"] = row.get("instances", 0) + 1
            if fact is not None:
                row["title"] = row["title"] or str(fact.title)
                row["severity"] = row["severity"] or str(fact.severity)
                row["cves"].update(split_cve_ids(str(fact.cve_ids)))
    records = [
        {**row, "severity": severity_label(row["severity"]), "cve_ids": ";".join(sorted(row.pop("cves")))}
        for row in rows.values()
    ]
    frame = pd.DataFrame(records, columns=list(PINNED_COLUMNS))
    if frame.empty:
        return frame
    frame["rank"] = frame["severity"].map(_severity_rank)
    frame = frame.sort_values(["rank", "platform_name", "patch_id"], ignore_index=True)
    return frame.drop(columns="rank")


def _cves(pinned: pd.DataFrame) -> set[str]:
    return {cve for joined in pinned["cve_ids"] for cve in split_cve_ids(str(joined))}


def _is_critical(pinned: pd.DataFrame) -> pd.Series:
    return pinned["severity"] == "Critical"


def staging_passed(inputs: ApprovalInputs) -> bool:
    """Every replica patched and healthy, every target's staging stack created (or not needed), and every RDS
    rehearsal passed. A rollout of RDS maintenance alone has no EC2 replica to wait for."""
    stacks_ok = all(stack.get("created") or stack.get("status") == "NOT_NEEDED" for stack in inputs.stacks)
    replicas_ok = bool(inputs.staging["passed"].all()) if len(inputs.staging) else inputs.rds_planned
    ec2_ok = replicas_ok and (len(inputs.staging) > 0 or inputs.waves.empty)
    rds = _rds(inputs)
    return ec2_ok and stacks_ok and (rds is None or rds_rehearsals_passed(*rds))


def _rds(inputs: ApprovalInputs) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(the RDS plan, its rehearsals' results), or None when no RDS maintenance is planned."""
    if inputs.rds_plan is None or inputs.rds_plan.empty:
        return None
    results = inputs.rds_rehearsals
    return inputs.rds_plan, results if results is not None else concat_frames([], REHEARSAL_RESULT_COLUMNS)


def headline(inputs: ApprovalInputs) -> str:
    """The first line: did staging pass."""
    summary = staging_summary(inputs.staging)
    instances, failed = int(summary["instances"]), int(summary["failed"])
    stack_errors = [stack for stack in inputs.stacks if stack.get("error")]
    if instances and not failed and not stack_errors:
        text = f"Staging passed: {plural(instances, 'replica')} patched and healthy"
    elif instances == 0:
        text = "Staging FAILED: no replica was patched"
    else:
        text = f"Staging FAILED: {failed} of {plural(instances, 'replica')} failed"
    if stack_errors:
        text += f", {plural(len(stack_errors), 'stack')} not created"
    return f"# {text}"


def decision_section(inputs: ApprovalInputs) -> list[str]:
    """What Approve does, in one sentence; and what Reject does."""
    members = inputs.members
    pinned = inputs.pinned
    critical = int(_is_critical(pinned).sum())
    patches = pinned["patch_id"].nunique() if not pinned.empty else 0
    accounts, regions = members["account_id"].nunique(), members["region"].nunique()
    waves = members["wave"].nunique()
    warning = []
    if not staging_passed(inputs):
        warning = [
            "",
            "**Staging did not pass**: approving rolls these patches out all the same, and the run ends failed "
            "(see why below).",
        ]
    return [
        f"**Approve** installs {plural(patches, 'pinned patch', 'pinned patches')} "
        f"({critical} critical, fixing {plural(len(_cves(pinned)), 'CVE')}) on "
        f"{plural(len(members), 'production instance')} in {plural(accounts, 'account')} and "
        f"{plural(regions, 'region')}, in {plural(waves, 'wave')} (the canary first). "
        "**Reject** installs nothing: every instance keeps its current patches, and the report says why.",
        *warning,
    ]


def patches_section(inputs: ApprovalInputs) -> list[str]:
    """The pinned patches by operating system, counted by severity, with their CVEs; the critical ones by name."""
    pinned = inputs.pinned
    if pinned.empty:
        return []
    members = inputs.members
    severities = sorted(set(pinned["severity"]), key=_severity_rank)
    rows = []
    for platform, patches in pinned.groupby("platform_name", sort=True):
        counts = patches["severity"].value_counts()
        instances = int((members["platform_name"] == platform).sum())
        rows.append(
            [platform, instances, len(patches), *(int(counts.get(s, 0)) for s in severities), len(_cves(patches))]
        )
    lines = ["## What will be installed", ""]
    lines += table(["Operating system", "Instances", "Pinned patches", *severities, "CVEs fixed"], rows)
    critical = pinned[_is_critical(pinned)]
    if critical.empty:
        return [*lines, "", "No critical patch is pinned."]
    lines += ["", f"### Critical patches ({len(critical)})", ""]
    listed = []
    for row in critical.head(MAX_CRITICAL_LISTED).to_dict("records"):
        cves = split_cve_ids(str(row["cve_ids"]))
        more = len(cves) - MAX_CVES_LISTED
        shown = ", ".join(cves[:MAX_CVES_LISTED]) + (f" and {more} more" if more > 0 else "")
        title = str(row["title"])
        title = title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 3].rstrip() + "..."
        listed.append([row["patch_id"], title, row["platform_name"], shown or "none", row["instances"]])
    lines += table(["Patch", "Title", "Operating system", "CVEs", "Instances"], listed)
    if len(critical) > MAX_CRITICAL_LISTED:
        lines += ["", f"... and {len(critical) - MAX_CRITICAL_LISTED} more critical patches (see the run page)."]
    return lines


def where_section(inputs: ApprovalInputs) -> list[str]:
    """Where the rollout installs: instances per account, region and patch group, and what staging left out."""
    members = inputs.members
    if members.empty:
        return []
    groups = members.groupby(["account_id", "region", "patch_group"], sort=True)
    rows = [
        [account, region, group or "(none)", len(frame), ", ".join(sorted(set(frame["platform_name"])))]
        for (account, region, group), frame in groups
    ]
    lines = ["## Where", ""]
    lines += table(["Account", "Region", "Patch group", "Instances", "Operating systems"], rows)
    left_out = inputs.production.merge(inputs.waves[_KEY], on=_KEY, how="left", indicator=True)
    left_out = left_out[left_out["_merge"] == "left_only"]
    if not left_out.empty:
        profiles = left_out["profile_id"].nunique()
        cap = f" (at most {plural(inputs.staging_cap, 'replica')} per account and region)" if inputs.staging_cap else ""
        lines += [
            "",
            f"Not in this rollout: {plural(len(left_out), 'instance')} of {plural(profiles, 'profile')} that "
            f"staging did not rehearse{cap}; the report lists them as not staged.",
        ]
    return lines


def staging_section(inputs: ApprovalInputs) -> list[str]:
    """Each staged profile's replica: what it stands for, what it installed, its health check and result."""
    results = inputs.staging
    lines = []
    if not results.empty:
        stands_for = {str(p["profile_id"]): int(p["production_instances"]) for p in inputs.profiles.to_dict("records")}
        accounts = results["account_id"].nunique()
        rows = []
        for row in results.to_dict("records"):
            planned = len(split_cve_ids(str(row["patch_ids"])))
            rows.append(
                [
                    row["profile_id"],
                    row["platform_name"],
                    f"{row['account_id']} {row['region']}" if accounts > 1 else row["region"],
                    row["patch_group"] or "(none)",
                    stands_for.get(str(row["profile_id"]), ""),
                    row["instance_id"],
                    f"{int(row['installed'])} of {planned}",
                    _status(str(row["health_status"])),
                    "passed" if row["passed"] else "**FAILED**",
                ]
            )
        header = ["Profile", "Operating system", "Account, region" if accounts > 1 else "Region", "Patch group"]
        header += ["Stands for (instances)"]
        header += ["Replica", "Patches installed", "Health check", "Result"]
        lines += ["## Staging results by profile", "", *table(header, rows)]
        failed = results[~results["passed"]]
        if not failed.empty:
            rows = [[r["profile_id"], r["instance_id"], r["reason"]] for r in failed.to_dict("records")]
            lines += ["", "### Why staging failed", "", *table(["Profile", "Replica", "Reason"], rows)]
    stack_errors = [stack for stack in inputs.stacks if stack.get("error")]
    if stack_errors:
        rows = [
            [s.get("account_id", ""), s.get("region", ""), s.get("stack_name", ""), s["error"]] for s in stack_errors
        ]
        lines += ["", "### Staging stacks not created", "", *table(["Account", "Region", "Stack", "Error"], rows)]
    return lines


def _status(status: str) -> str:
    """An SSM invocation status as words: "Success" -> "passed", "" -> "not run"."""
    return {"Success": "passed", "": "not run"}.get(status, status.lower().replace("timedout", "timed out"))


def waves_section(inputs: ApprovalInputs) -> list[str]:
    """The waves in order, and when the rollout halts."""
    sizes = inputs.waves.groupby("wave").size()
    if sizes.empty:
        return []
    rows = [[f"{int(w)} (canary)" if int(w) == 1 else int(w), int(n)] for w, n in sizes.items()]
    return [
        "## Production waves",
        "",
        *table(["Wave", "Instances"], rows),
        "",
        f"{plural(int(sizes.sum()), 'production instance')} in {plural(len(sizes), 'wave')}; a wave with more than "
        f"{inputs.halt_threshold} failed instance(s) halts the rest.",
    ]


def rds_section(inputs: ApprovalInputs) -> list[str]:
    """The RDS maintenance planned, its staging rehearsals and the databases (core.rds_approval)."""
    rds = _rds(inputs)
    return [] if rds is None else rds_approval_section(*rds, inputs.rds_apply).strip("\n").splitlines()


def links_section(inputs: ApprovalInputs) -> list[str]:
    """Links that open in a browser."""
    if not inputs.links:
        return []
    return ["## Links", "", *(f"- [{label}]({url})" for label, url in inputs.links)]


Section = Callable[[ApprovalInputs], list[str]]
# The body's sections in order; a stage adds its own here.
SECTIONS: Final[tuple[Section, ...]] = (
    decision_section,
    patches_section,
    where_section,
    staging_section,
    waves_section,
    rds_section,
    links_section,
)


def approval_body(inputs: ApprovalInputs, sections: Sequence[Section] = SECTIONS) -> str:
    """The approver's Markdown: the headline, then every section that has something to say."""
    parts = [[headline(inputs)], *(section(inputs) for section in sections)]
    return "\n\n".join("\n".join(lines) for lines in parts if lines) + "\n"
