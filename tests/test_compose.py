"""docker-compose.yaml stays consistent with the project (no Docker engine runs in CI to start it)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_compose_runs_every_airflow_component_on_celery() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    services = compose["services"]
    commands = {name: " ".join(spec.get("command", [])) for name, spec in services.items()}
    for component in ("api-server", "scheduler", "dag-processor", "triggerer", "celery worker"):
        assert any(f"airflow {component}" == cmd for cmd in commands.values()), component
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert "postgres" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    # Secrets come from .env, never from the file; the UI is published on loopback only.
    assert all(env[k].startswith("${") for k in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"))
    assert services["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]


def test_compose_mounts_exist_and_image_matches_the_pinned_airflow() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    for volume in compose["services"]["airflow-scheduler"]["volumes"]:
        source = volume.split(":")[0]
        assert (REPO / source).is_dir(), source
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.M)
    assert pinned is not None
    assert f"FROM apache/airflow:{pinned.group(1)}-python3.11" in (REPO / "Dockerfile").read_text()
