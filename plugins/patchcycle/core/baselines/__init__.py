"""Patch baselines as code, without I/O: each module holds one concern, and callers import from it.

vocabulary (what each operating system filters on, the ownership tag), model (the frozen baselines and
errors), schema_errors (jsonschema's errors as messages naming the field), validation (a YAML document
to a BaselineSpec), diff (what differs from SSM, Change, BaselineDiff), plan (plan_baselines and the
ownership rules). patchcycle.baseline_files reads the files and the schema and hands them to validation.
"""
