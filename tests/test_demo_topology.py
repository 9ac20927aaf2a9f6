"""The demo's Celery topology settings and how it treats a dying worker (without starting Airflow)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from include.demo import (
    WORKER_HOSTNAME_VARIABLE,
    CeleryTopology,
    Service,
    ServiceDied,
    celery_settings,
    check_alive,
    start_service,
    stop_services,
    worker_hostname,
)


def test_the_result_backend_is_the_metadata_database_and_each_worker_names_its_task_instances(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/patchcycle_demo_x"
    settings = celery_settings(CeleryTopology(url, "redis://127.0.0.1:6379/0", "patchcycle-q", 2))
    assert settings["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert settings["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+{url}"
    assert settings["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == "patchcycle-q"
    assert settings["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] == "60"
    shorter = celery_settings(CeleryTopology(url, "redis://127.0.0.1:6379/0", "patchcycle-q", 2, 30))
    assert shorter["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] == "30"
    module, _, function = settings["AIRFLOW__CORE__HOSTNAME_CALLABLE"].rpartition(".")
    assert getattr(sys.modules[module], function) is worker_hostname  # importable under that name
    monkeypatch.setenv(WORKER_HOSTNAME_VARIABLE, "celery-worker-2")
    assert worker_hostname() == "celery-worker-2"


def test_a_dead_worker_is_reported_and_the_rest_go_on_until_the_last_worker_dies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def started(name: str, seconds: float, worker: bool) -> Service:
        service = start_service(name, [sys.executable, "-c", f"import time; time.sleep({seconds})"], {}, tmp_path)
        return replace(service, worker=worker)

    scheduler = started("scheduler", 60, worker=False)
    first, second = started("celery-worker-1", 0, worker=True), started("celery-worker-2", 60, worker=True)
    services = [scheduler, first, second]
    try:
        first.process.wait(timeout=30)
        check_alive(services)
        check_alive(services)  # said once
        assert capsys.readouterr().out == (
            "celery-worker-1 exited (code 0); Airflow retries its tasks on the 1 worker(s) left\n"
        )
        scheduler.process.kill()
        scheduler.process.wait(timeout=30)
        with pytest.raises(ServiceDied) as died:  # any other service dying stops the demo
            check_alive(services)
        assert died.value.service is scheduler
        second.process.kill()
        second.process.wait(timeout=30)
        with pytest.raises(ServiceDied) as died:
            check_alive([first, second])
        assert died.value.service is first  # no worker left: nothing can run tasks any more
    finally:
        stop_services(services, grace=5)
