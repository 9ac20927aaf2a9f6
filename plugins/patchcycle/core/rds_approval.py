"""The approval body's RDS section: the maintenance planned, what each staging rehearsal showed, and the waves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from patchcycle.core.rds_plan import DB_CLUSTER
from patchcycle.core.rds_report import impact_words


def _impact(row: dict[str, Any]) -> str:
    """What applying the row's action means for the database's clients, in words."""
    return impact_words(str(row["impact"]), bool(row["multi_az"]), str(row["action"]))


def _cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|") or " "


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]


def _date(value: Any) -> str:
    return "" if pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d")


def rds_rehearsals_passed(plan: pd.DataFrame, results: pd.DataFrame) -> bool:
    """Every rehearsal the plan needs ran and passed (True when no RDS maintenance is planned; an Aurora member's
    own action needs none: it is not rehearsed)."""
    rehearsed = plan[plan["rehearsal_id"] != ""]
    needed = set(zip(rehearsed["account_id"], rehearsed["region"], rehearsed["rehearsal_id"], strict=True))
    passed = {
        (a, r, i)
        for a, r, i, ok in zip(
            results["account_id"], results["region"], results["rehearsal_id"], results["passed"], strict=True
        )
        if ok
    }
    return needed <= passed


def _role(row: dict[str, Any]) -> str:
    if row["kind"] == DB_CLUSTER:
        members = str(row["members"]).replace(";", ", ")
        return f"Aurora DB cluster ({members or 'no members'})"
    if not row["rehearsal_id"]:
        return "Aurora DB instance, not rehearsed"
    return f"replica of {row['replica_of']}" if row["replica_of"] else ""


def rds_approval_section(plan: pd.DataFrame, results: pd.DataFrame, apply_mode: str) -> str:
    """Markdown for the approver ("" when no RDS maintenance is planned): the rehearsals, then each database."""
    if plan.empty:
        return ""
    dbs = plan.drop_duplicates(["account_id", "region", "resource_id"])
    passed = int(results["passed"].sum()) if len(results) else 0
    rehearsed = plan[plan["rehearsal_id"] != ""]
    rehearsals = len(set(zip(rehearsed["account_id"], rehearsed["region"], rehearsed["rehearsal_id"], strict=True)))
    clusters = dbs[dbs["kind"] == DB_CLUSTER]
    unrehearsed = dbs[dbs["rehearsal_id"] == ""]
    ok = rds_rehearsals_passed(plan, results)
    when = "now, in waves" if apply_mode == "immediate" else "in each database's next maintenance window"
    lines = [
        "",
        f"## RDS maintenance: staging {'passed' if ok else 'FAILED'}",
        "",
        f"{len(dbs) - len(clusters)} DB instance(s) and {len(clusters)} Aurora DB cluster(s) get {len(plan)} "
        f"pending maintenance action(s), applied {when}. "
        f"{passed} of {rehearsals} staging rehearsal(s) passed on a copy restored from a snapshot.",
        "",
        *(
            [
                f"Not rehearsed: {', '.join(sorted(unrehearsed['resource_id']))} (an Aurora DB instance's own "
                "action: the DB instance of a restored cluster starts on current software, with nothing pending to "
                "rehearse). The auto approval policy leaves them out; approving here applies them unrehearsed.",
                "",
            ]
            if len(unrehearsed)
            else []
        ),
        "### Staging rehearsals",
        "",
    ]
    # The account only when there are several: one account's region says where a database is.
    where = ["Account", "Region"] if plan["account_id"].nunique() > 1 else ["Region"]

    def place(row: dict[str, Any]) -> list[Any]:
        return [row["account_id"], row["region"]] if len(where) == 2 else [row["region"]]

    rows = [
        [
            *place(r),
            r["staging_db"],
            r["source_db"],
            r["snapshot_id"],
            r["actions"].replace(";", ", "),
            "passed" if r["passed"] else "FAILED",
            r["detail"],
        ]
        for r in results.to_dict("records")
    ]
    lines += _table([*where, "Staging copy", "Restored from", "Snapshot", "Actions", "Result", "Detail"], rows)
    lines += ["", "### Databases", ""]
    rows = [
        [
            *place(r),
            r["resource_id"],
            r["action"],
            _date(r["auto_applied_after"]),
            _date(r["forced_apply_date"]),
            _impact(r),
            _role(r),
            r["wave"],
        ]
        for r in plan.sort_values(["wave", "account_id", "region", "resource_id"]).to_dict("records")
    ]
    header = [*where, "Database", "Action", "Auto-applied after", "Forced on", "Impact", "Role", "Wave"]
    lines += _table(header, rows)
    lines += [
        "",
        "Read replicas go in earlier waves than their sources, planned cluster members before their cluster; a DB "
        "whose rehearsal failed is not touched.",
        "",
    ]
    return "\n".join(lines)
