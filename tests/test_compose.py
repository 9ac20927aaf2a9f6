"""docker-compose.yaml stays consistent with the project (no Docker engine runs in CI to start it)."""

from __future__ import annotations

import json
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


def test_compose_and_the_demos_celery_topology_are_in_step() -> None:
    """The topology tests/e2e/test_celery_topology.py runs without Docker has the same services and settings."""
    from include.demo import AIRFLOW_SERVICES, CeleryTopology, celery_settings

    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    services = compose["services"]
    commands = {" ".join(spec.get("command", [])): spec for spec in services.values()}
    for component in AIRFLOW_SERVICES:
        assert f"airflow {component}" in commands, component
    assert commands["airflow celery worker"]["deploy"]["replicas"] == 2  # as the demo's default --workers
    env = services["airflow-worker"]["environment"]
    demo = celery_settings(CeleryTopology("postgresql+psycopg2://postgres@127.0.0.1/db", "redis://x", "q", 2))
    # Containers have host names of their own; the demo's workers share one machine and need this one.
    missing = set(demo) - {"AIRFLOW__CORE__HOSTNAME_CALLABLE"} - set(env)
    assert not missing, f"docker-compose.yaml lacks settings the Celery topology test runs with: {sorted(missing)}"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert demo["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + demo["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def test_the_env_example_sets_what_compose_requires_and_both_connections() -> None:
    compose_text = (REPO / "docker-compose.yaml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", compose_text))
    assert required == {"AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY"}
    example = (REPO / ".env.example").read_text()
    assigned = dict(re.findall(r"^(\w+)=(.*)$", example, re.M))
    assert required <= set(assigned)
    commented = re.findall(r"^# AIRFLOW_CONN_AWS_DEFAULT='(.*)'$", example, re.M)
    sandbox = json.loads(assigned["AIRFLOW_CONN_AWS_DEFAULT"].strip("'"))
    (real,) = (json.loads(c) for c in commented)
    port = yaml.safe_load(compose_text)["services"]["sandbox"]["command"][-1]
    assert sandbox["extra"]["endpoint_url"] == f"http://sandbox:{port}"
    assert "endpoint_url" not in real["extra"] and "login" not in real  # real AWS: the credential chain
    assert real["extra"]["config_kwargs"] == sandbox["extra"]["config_kwargs"]
    assert ".env" in (REPO / ".gitignore").read_text().split()
