"""What the cycle tells its SNS topic: subjects SNS accepts, and bodies with the link a reader acts on."""

from __future__ import annotations

from patchcycle.core.notifications import SUBJECT_LIMIT, approval_waiting, rollout_halted, run_ended

RUN = "scheduled__2026-12-08T03:00:00+00:00"
PAGE = "https://airflow.example.com/dags/patch_cycle/runs/scheduled__2026-12-08T03%3A00%3A00%2B00%3A00"


def test_approval_says_what_to_decide_by_when_and_where() -> None:
    message = approval_waiting(RUN, f"{PAGE}/tasks/approve_production/required_actions", 24.0, "3 of 3 passed")
    assert message.subject == f"Patch cycle {RUN}: approval needed"
    assert "No answer within 24 hours rejects." in message.body
    assert "Staging: 3 of 3 passed" in message.body
    assert f"Answer here: {PAGE}/tasks/approve_production/required_actions" in message.body
    assert "Answer in the Airflow UI" in approval_waiting(RUN, "", 1.5, "").body  # no base_url: no link to give


def test_a_halt_names_the_wave_and_why() -> None:
    message = rollout_halted(RUN, 2, "2 of 10 failed, more than the 1 allowed by halt_threshold 10%", PAGE)
    assert message.subject == f"Patch cycle {RUN}: rollout halted at wave 2"
    assert "halted its production rollout at wave 2: 2 of 10 failed" in message.body
    assert message.body.endswith(f"Run: {PAGE}\n")


def test_the_end_lists_the_problems_and_the_report() -> None:
    failed = run_ended("Patch cycle", RUN, False, ["the rollout halted after wave 2", "x"], "s3://b/r.html", "")
    assert failed.subject == f"Patch cycle {RUN}: did not run its course"
    assert "- the rollout halted after wave 2\n- x\n" in failed.body and "Report: s3://b/r.html" in failed.body
    assert "Run:" not in failed.body
    assert run_ended("Compliance watch", "r1", True, [], "", PAGE).subject == "Compliance watch r1: ran its course"


def test_subjects_are_what_sns_accepts_whatever_the_run_id() -> None:
    long = rollout_halted("manual__" + "x" * 200 + "\u00e9\n", 1, "why", "").subject
    assert len(long) == SUBJECT_LIMIT and long.endswith("...")
    assert all(" " <= char <= "~" for char in long)  # printable ASCII, no line break


def test_a_halted_refresh_rollout_is_told_by_group() -> None:
    message = rollout_halted(RUN, 2, "alarm web-5xx is in ALARM", PAGE, "Auto Scaling", step="group")
    assert message.subject.endswith("Auto Scaling rollout halted at group 2")
    assert "The later Auto Scaling groups will not run" in message.body
