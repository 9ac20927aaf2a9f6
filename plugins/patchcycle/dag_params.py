"""The DAGs' params, derived from their settings classes (patchcycle.config): defaults are written once, there."""

from __future__ import annotations

from airflow.sdk import Param

from patchcycle.config import Settings


def params_of(settings_class: type[Settings]) -> dict[str, Param]:
    """One Param per setting, in field order: its default, title, description and JSON schema for the form."""
    return {
        name: Param(default, title=spec.title, description=spec.description or None, **spec.schema)
        for name, (default, spec) in settings_class.settings().items()
    }
