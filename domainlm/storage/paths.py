"""A URL -> RemotePath: the few pathlib methods the corpus readers and the token cache use, over fsspec.

A RemotePath prints as its URL (document ids and reports name `s3://bucket/key`), sorts and
compares by it, and opens files as streams: nothing is copied to local disk to read a corpus.
Every call to the store goes through `storage_errors`, so a failure of the store is one line.
"""

from __future__ import annotations

import datetime
import functools
import posixpath
from dataclasses import dataclass
from typing import IO, Any

from domainlm.storage import filesystem, storage_errors


@dataclass(frozen=True)
class RemoteStat:
    """What file_stamp reads from os.stat_result: size and modification time (ns)."""

    st_size: int
    st_mtime_ns: int


def _mtime_ns(info: dict[str, Any]) -> int:
    value = info.get("LastModified") or info.get("mtime") or info.get("created") or info.get("updated")
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, int | float):
        return int(value * 1e9)
    if isinstance(value, str):
        return int(datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
    return 0


@functools.total_ordering
class RemotePath:
    """A file or folder at `url` in object storage."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") if not url.endswith("://") else url
        self.fs, self.path = filesystem(self.url)

    def _child(self, path: str) -> RemotePath:
        return RemotePath(self.fs.unstrip_protocol(path))

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __lt__(self, other: object) -> bool:
        return str(self) < str(other)

    def __hash__(self) -> int:
        return hash(self.url)

    def __truediv__(self, name: str) -> RemotePath:
        return RemotePath(f"{self.url}/{name}")

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> RemotePath:
        return self._child(posixpath.dirname(self.path.rstrip("/")))

    def exists(self) -> bool:
        with storage_errors(self.url, self.fs):
            return self.fs.exists(self.path)

    def is_dir(self) -> bool:
        with storage_errors(self.url, self.fs):
            return self.fs.isdir(self.path)

    def is_file(self) -> bool:
        with storage_errors(self.url, self.fs):
            return self.fs.isfile(self.path)

    def stat(self) -> RemoteStat:
        with storage_errors(self.url, self.fs):
            info = self.fs.info(self.path)
        return RemoteStat(int(info.get("size") or 0), _mtime_ns(info))

    def open(self, mode: str = "rb") -> IO[bytes]:
        with storage_errors(self.url, self.fs):
            return self.fs.open(self.path, mode)

    def read_bytes(self) -> bytes:
        with storage_errors(self.url, self.fs):
            return self.fs.cat_file(self.path)

    def rglob(self, pattern: str = "*") -> list[RemotePath]:
        """Every file below this folder (only `*`: the readers filter by name themselves)."""
        assert pattern == "*", "RemotePath.rglob lists every file"
        with storage_errors(self.url, self.fs):
            found = self.fs.find(self.path)
        return sorted(self._child(p) for p in found)

    def glob(self) -> list[RemotePath]:
        """What this URL, read as a pattern (`*`, `?`, `[...]`, `**`), matches."""
        with storage_errors(self.url, self.fs):
            found = self.fs.glob(self.path)
        return sorted(self._child(p) for p in found)


def as_path(value: Any) -> Any:
    """A corpus path as the readers use it: a URL string -> RemotePath, a RemotePath or Path as it
    is, any other string -> Path (`Path("s3://b/k")` would fold the `//` and lose the scheme)."""
    from pathlib import Path

    from domainlm.storage import is_url

    if isinstance(value, RemotePath | Path):
        return value
    return RemotePath(value) if is_url(value) else Path(value)
