"""The run's SNS notifications through the amazon provider's SnsNotifier, against the sandbox's SNS: published
when the run has a topic, nothing when it has none, and a refusal logged rather than raised."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.config import Notifications
from patchcycle.core.notifications import Message
from patchcycle.notifications.cycle_events import notify
from tests.conftest import client_factory

REGION = "us-east-1"
LOG = logging.getLogger("test.notifications")
MESSAGE = Message("Patch cycle r1: approval needed", "Answer here: https://airflow.example.com/...\n")


@pytest.fixture(scope="module")
def topic(server: SandboxServer) -> tuple[str, Any, str]:
    """A topic with an SQS queue subscribed to it, to read what was published."""
    clients = client_factory(server.url)
    sns, sqs = clients("sns", region=REGION), clients("sqs", region=REGION)
    arn = sns.create_topic(Name="patch-ops")["TopicArn"]
    queue = sqs.create_queue(QueueName="patch-ops-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    return arn, sqs, queue


def received(sqs: Any, queue: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return [json.loads(message["Body"]) for message in messages]


def test_a_run_with_a_topic_publishes_subject_and_body(topic: tuple[str, Any, str]) -> None:
    arn, sqs, queue = topic
    assert notify({}, Notifications(notify_topic_arn=arn), MESSAGE, LOG)
    (envelope,) = received(sqs, queue)
    assert (envelope["Subject"], envelope["Message"]) == (MESSAGE.subject, MESSAGE.body)


def test_a_run_without_a_topic_publishes_nothing(topic: tuple[str, Any, str]) -> None:
    _, sqs, queue = topic
    assert not notify({}, Notifications(), MESSAGE, LOG)
    assert received(sqs, queue) == []


def test_a_topic_sns_refuses_is_logged_and_the_task_goes_on(
    topic: tuple[str, Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        assert not notify({}, Notifications(notify_topic_arn=missing), MESSAGE, LOG)
    assert f"Could not notify {missing} (Patch cycle r1: approval needed)" in caplog.text
