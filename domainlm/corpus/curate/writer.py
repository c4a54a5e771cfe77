"""Kept documents -> OUT/<source>.jsonl.gz, removals -> OUT/removed.jsonl.gz, byte-reproducibly.

gzip headers carry a timestamp and a file name by default; both are pinned (mtime=0, no name) so
that the same input and config give byte-identical files on every run and worker count.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from domainlm.outputs import file_sha256

REMOVED_LOG = "removed.jsonl.gz"
_COMPRESS_LEVEL = 6  # zlib's default trade-off; level 9 is ~3x slower for ~3% smaller files


class JsonlGzWriter:
    """Append JSON records as lines to one deterministic gzip file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._gz = gzip.GzipFile(
            filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=_COMPRESS_LEVEL
        )
        self.num_records = 0

    def write(self, record: dict[str, Any]) -> None:
        self._gz.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        self.num_records += 1

    def close(self) -> None:
        self._gz.close()
        self._raw.close()


class CuratedWriter:
    """One `<source>.jsonl.gz` per source, in the form every domainlm reader accepts."""

    def __init__(self, out_dir: Path, sources: list[str]) -> None:
        self.out_dir = out_dir
        # Every source gets a file, even if nothing of it is kept, so downstream paths are stable.
        self._files = {source: JsonlGzWriter(out_dir / f"{source}.jsonl.gz") for source in sources}

    def write(self, source: str, doc_id: str, text: str) -> None:
        self._files[source].write({"text": text, "source": source, "id": doc_id})

    def close(self) -> list[dict[str, Any]]:
        """Close every file; returns the report's `outputs` entries (relative path, count, sha256)."""
        outputs = []
        for source, handle in self._files.items():
            handle.close()
            outputs.append(
                {
                    "source": source,
                    "path": handle.path.name,
                    "documents": handle.num_records,
                    "sha256": file_sha256(handle.path),
                }
            )
        return outputs
