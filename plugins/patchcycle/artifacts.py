"""The artifact store: each stage's tables and summaries under {root}/{dag_id}/{run_id}/{stage}/.

Built on Airflow's ObjectStoragePath so the same code writes to s3:// (any worker can
read it back) or file:// (local experiments). XCom carries only the URIs.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
from airflow.sdk import ObjectStoragePath


@dataclass(frozen=True)
class ArtifactStore:
    """Where one DAG run keeps its artifacts."""

    root: str
    dag_id: str
    run_id: str
    conn_id: str | None = "aws_default"

    def uri(self, stage: str, name: str) -> str:
        """The plain URI (s3://bucket/key or file:///path) of an artifact, as AWS and people read it."""
        safe_run = self.run_id.replace(":", "_").replace("+", "_")
        return f"{self.root.rstrip('/')}/{self.dag_id}/{safe_run}/{stage}/{name}"

    def path(self, stage: str, name: str) -> ObjectStoragePath:
        uri = self.uri(stage, name)
        return ObjectStoragePath(uri, conn_id=self.conn_id if uri.startswith("s3://") else None)

    def write_frame(self, stage: str, name: str, frame: pd.DataFrame) -> str:
        """Write a table as parquet; returns its URI."""
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return self.write_bytes(stage, f"{name}.parquet", buffer.getvalue())

    def write_json(self, stage: str, name: str, document: Any) -> str:
        return self.write_bytes(stage, name, json.dumps(document, indent=2, default=str).encode())

    def write_bytes(self, stage: str, name: str, data: bytes) -> str:
        target = self.path(stage, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as handle:
            handle.write(data)
        return self.uri(stage, name)

    def read_frame(self, uri: str) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.read_bytes(uri)))

    def read_json(self, uri: str) -> Any:
        return json.loads(self.read_bytes(uri))

    def read_bytes(self, uri: str) -> bytes:
        return read_uri(uri, self.conn_id)


def read_uri(uri: str, conn_id: str | None) -> bytes:
    """An artifact's bytes by its plain URI; conn_id is used for s3:// only (e.g. another run's report)."""
    with ObjectStoragePath(uri, conn_id=conn_id if uri.startswith("s3://") else None).open("rb") as handle:
        return bytes(handle.read())
