"""The artifact store: one DAG run's files under {root}/{dag_id}/{run_id}/, as bytes.

Built on Airflow's ObjectStoragePath so the same code writes to s3:// (any worker can read it back) or
file:// (local experiments). It knows no file by name: patchcycle.run_artifacts says what each file is.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow.sdk import ObjectStoragePath


def safe_run_id(run_id: str) -> str:
    """The run id as spelled in paths (":" and "+" are awkward in S3 keys and file names)."""
    return run_id.replace(":", "_").replace("+", "_")


@dataclass(frozen=True)
class ArtifactStore:
    """Where one DAG run keeps its artifacts."""

    root: str
    dag_id: str
    run_id: str
    conn_id: str | None = "aws_default"

    def uri(self, relative: str) -> str:
        """The plain URI (s3://bucket/key or file:///path) of a file of the run, as AWS and people read it."""
        return f"{self.root.rstrip('/')}/{self.dag_id}/{safe_run_id(self.run_id)}/{relative}"

    def write(self, relative: str, data: bytes) -> str:
        """Write a file of the run; returns its URI."""
        target = self._path(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as handle:
            handle.write(data)
        return self.uri(relative)

    def read(self, relative: str) -> bytes | None:
        """A file of the run, or None when it does not exist."""
        try:
            return read_uri(self.uri(relative), self.conn_id)
        except FileNotFoundError:
            return None

    def exists(self, relative: str) -> bool:
        return bool(self._path(relative).exists())

    def _path(self, relative: str) -> ObjectStoragePath:
        uri = self.uri(relative)
        return ObjectStoragePath(uri, conn_id=self.conn_id if uri.startswith("s3://") else None)


def read_uri(uri: str, conn_id: str | None) -> bytes:
    """A file's bytes by its plain URI; conn_id is used for s3:// only (e.g. another run's report)."""
    with ObjectStoragePath(uri, conn_id=conn_id if uri.startswith("s3://") else None).open("rb") as handle:
        return bytes(handle.read())
