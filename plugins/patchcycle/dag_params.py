"""The DAGs' params, derived from their settings classes (patchcycle.config): defaults are written once, there."""

from __future__ import annotations

from airflow.sdk import Param

from patchcycle.config import Settings


def params_of(settings_class: type[Settings]) -> dict[str, Param]:
    """One Param per setting, in field order: its default, title, description, JSON schema for the form, and the
    form's section (the settings group it belongs to)."""
    sections = settings_class.sections()
    order = list(dict.fromkeys(sections.values()))  # sections in order of first appearance
    settings = sorted(settings_class.settings().items(), key=lambda item: order.index(sections[item[0]]))
    return {
        name: Param(default, title=spec.title, description=spec.description, section=sections[name], **spec.schema)
        for name, (default, spec) in settings  # grouped by section, in field order within each (sorted is stable)
    }
