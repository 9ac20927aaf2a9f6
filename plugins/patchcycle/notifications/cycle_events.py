"""Tells the run's SNS topic (param notify_topic_arn) what people must know: an approval waiting, a rollout
halted, the run ended. A notification that cannot be sent is logged, never fails the task: the cycle's own
record (the report, the task logs) stays the source of truth."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

from airflow.configuration import conf
from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

from patchcycle.config import Notifications
from patchcycle.core.notifications import Message


class _Log(Protocol):
    def info(self, event: Any, *args: Any, **kw: Any) -> Any: ...
    def warning(self, event: Any, *args: Any, **kw: Any) -> Any: ...


def sns_notifier(notifications: Notifications, message: Message) -> SnsNotifier | None:
    """The provider's SNS notifier for `message`, or None when the run has no topic."""
    if not notifications.notify_topic_arn:
        return None
    return SnsNotifier(
        aws_conn_id=notifications.notify_conn_id,
        region_name=notifications.topic_region,
        target_arn=notifications.notify_topic_arn,
        message=message.body,
        subject=message.subject,
    )


def notify(context: Any, notifications: Notifications, message: Message, log: _Log) -> bool:
    """Publish `message` to the run's topic; whether it was sent (False: no topic, or SNS refused it)."""
    notifier = sns_notifier(notifications, message)
    if notifier is None:
        return False
    try:
        notifier.notify(context)  # not __call__: the text is final, nothing in it is a template
    except Exception as error:
        log.warning("Could not notify %s (%s): %s", notifications.notify_topic_arn, message.subject, error)
        return False
    log.info("Notified %s: %s", notifications.notify_topic_arn, message.subject)
    return True


def api_base_url() -> str:
    """The API server's public URL ([api] base_url); "" when it is not set (links are then relative)."""
    return str(conf.get("api", "base_url", fallback="") or "")


def page_of_run(context: Any) -> str:
    """The run's page in the Airflow UI, from [api] base_url ("" when it is not set)."""
    base_url = api_base_url()
    if not base_url:
        return ""
    run = context["dag_run"]
    return f"{base_url.rstrip('/')}/dags/{quote(str(run.dag_id), safe='')}/runs/{quote(str(run.run_id), safe='')}"
