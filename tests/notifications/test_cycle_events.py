"""The run's SNS notifications through the amazon provider's SnsNotifier, against the sandbox's SNS: published
when the run has a topic, nothing when it has none, and a refusal logged rather than raised."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.config import Notifications
from patchcycle.core.notifications import Message
from patchcycle.notifications.cycle_events import notify
from tests.conftest import subscribed_topic

REGION = "us-east-1"
Topic = tuple[str, Callable[[], list[dict[str, Any]]]]  # its ARN and a reader of its inbox
LOG = logging.getLogger("test.notifications")
MESSAGE = Message("Patch cycle r1: approval needed", "Answer here: https://airflow.example.com/...\n")


@pytest.fixture(scope="module")
def topic(server: SandboxServer) -> Topic:
    return subscribed_topic(server.url, "patch-ops", region=REGION)


def test_a_run_with_a_topic_publishes_subject_and_body(topic: Topic) -> None:
    arn, inbox = topic
    assert notify({}, Notifications(notify_topic_arn=arn), MESSAGE, LOG)
    (envelope,) = inbox()
    assert (envelope["Subject"], envelope["Message"]) == (MESSAGE.subject, MESSAGE.body)


def test_a_run_without_a_topic_publishes_nothing(topic: Topic) -> None:
    _, inbox = topic
    assert not notify({}, Notifications(), MESSAGE, LOG)
    assert inbox() == []


def test_a_topic_sns_refuses_is_logged_and_the_task_goes_on(topic: Topic, caplog: pytest.LogCaptureFixture) -> None:
    missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        assert not notify({}, Notifications(notify_topic_arn=missing), MESSAGE, LOG)
    assert f"Could not notify {missing} (Patch cycle r1: approval needed)" in caplog.text
