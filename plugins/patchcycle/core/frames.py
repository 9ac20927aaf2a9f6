"""Typed tables: a DataFrame of exactly the documented columns and dtypes, built and checked.

Every table a run keeps (see patchcycle.run_artifacts) declares its columns as {name: pandas dtype}.
Text is "str" ("" when unknown, never missing); times are UTC_TIMESTAMP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import pandas as pd

UTC_TIMESTAMP: Final = "datetime64[us, UTC]"
Columns = Mapping[str, str]


class FrameSchemaError(ValueError):
    """A table's columns or dtypes are not the ones its schema declares."""


def typed_frame(rows: Iterable[Mapping[str, object]], columns: Columns) -> pd.DataFrame:
    """A DataFrame of exactly `columns` (name -> dtype); text None becomes "", datetimes become UTC."""
    frame = pd.DataFrame.from_records(list(rows), columns=list(columns))
    for name, dtype in columns.items():
        if dtype == "str":
            frame[name] = frame[name].astype(object).where(frame[name].notna(), "")
        elif dtype.startswith("datetime64"):
            frame[name] = pd.to_datetime(frame[name].astype(object), utc=True)
    return frame.astype(dict(columns))


def schema_problems(frame: pd.DataFrame, columns: Columns) -> list[str]:
    """What differs between a frame and its schema: missing, unexpected and mistyped columns ([] if none)."""
    problems = []
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        problems.append(f"missing column(s) {missing}")
    unexpected = [str(name) for name in frame.columns if name not in columns]
    if unexpected:
        problems.append(f"unexpected column(s) {unexpected}")
    for name, dtype in columns.items():
        if name in frame.columns and str(frame[name].dtype) != dtype:
            problems.append(f"column {name!r} is {frame[name].dtype}, not {dtype}")
    return problems


def checked_frame(frame: pd.DataFrame, columns: Columns, what: str) -> pd.DataFrame:
    """The frame with its columns in schema order; FrameSchemaError (naming `what`) unless it matches the schema."""
    problems = schema_problems(frame, columns)
    if problems:
        raise FrameSchemaError(f"{what}: " + "; ".join(problems))
    return frame[list(columns)]


def concat_frames(frames: Iterable[pd.DataFrame | None], columns: Columns) -> pd.DataFrame:
    """The frames stacked (an empty, typed frame when there are none; None is left out), dtypes kept."""
    present = [frame for frame in frames if frame is not None and len(frame)]
    if not present:
        return typed_frame([], columns)
    return pd.concat(present, ignore_index=True).astype(dict(columns))
