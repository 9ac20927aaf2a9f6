"""The approval body's RDS section: the maintenance planned, what each staging rehearsal showed, and the waves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from patchcycle.core.rds_plan import FAILOVER


def _cell(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|") or " "


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]


def _date(value: Any) -> str:
    return "" if pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d")


def rds_rehearsals_passed(plan: pd.DataFrame, results: pd.DataFrame) -> bool:
    """Every rehearsal the plan needs ran and passed (True when no RDS maintenance is planned)."""
    needed = set(zip(plan["account_id"], plan["region"], plan["rehearsal_id"], strict=True))
    passed = {
        (a, r, i)
        for a, r, i, ok in zip(
            results["account_id"], results["region"], results["rehearsal_id"], results["passed"], strict=True
        )
        if ok
    }
    return needed <= passed


def rds_approval_section(plan: pd.DataFrame, results: pd.DataFrame, apply_mode: str) -> str:
    """Markdown for the approver ("" when no RDS maintenance is planned): the rehearsals, then each database."""
    if plan.empty:
        return ""
    dbs = plan.drop_duplicates(["account_id", "region", "resource_id"])
    passed = int(results["passed"].sum()) if len(results) else 0
    rehearsals = len(set(zip(plan["account_id"], plan["region"], plan["rehearsal_id"], strict=True)))
    ok = rds_rehearsals_passed(plan, results)
    when = "now, in waves" if apply_mode == "immediate" else "in each database's next maintenance window"
    lines = [
        "",
        f"## RDS maintenance: staging {'passed' if ok else 'FAILED'}",
        "",
        f"{len(dbs)} DB instance(s) get {len(plan)} pending maintenance action(s), applied {when}. "
        f"{passed} of {rehearsals} staging rehearsal(s) passed on a copy restored from a snapshot.",
        "",
        "### Staging rehearsals",
        "",
    ]
    rows = [
        [
            r["region"],
            r["staging_db"],
            r["source_db"],
            r["snapshot_id"],
            r["actions"].replace(";", ", "),
            "passed" if r["passed"] else "FAILED",
            r["detail"],
        ]
        for r in results.to_dict("records")
    ]
    lines += _table(["Region", "Staging copy", "Restored from", "Snapshot", "Actions", "Result", "Detail"], rows)
    lines += ["", "### Databases", ""]
    rows = [
        [
            r["region"],
            r["resource_id"],
            r["action"],
            _date(r["auto_applied_after"]),
            _date(r["forced_apply_date"]),
            "Multi-AZ: brief failover" if r["impact"] == FAILOVER else "downtime while applied",
            f"replica of {r['replica_of']}" if r["replica_of"] else "",
            r["wave"],
        ]
        for r in plan.sort_values(["wave", "region", "resource_id"]).to_dict("records")
    ]
    header = ["Region", "DB instance", "Action", "Auto-applied after", "Forced on", "Impact", "Role", "Wave"]
    lines += _table(header, rows)
    lines += [
        "",
        "Read replicas go in earlier waves than their sources; a DB whose rehearsal failed is not touched.",
        "",
    ]
    return "\n".join(lines)
