"""Crash-safe outputs and fingerprints shared by every stage that writes files.

A stage builds its whole output in a hidden temp directory beside the target and renames it into
place at the end, so a killed run never leaves a directory that looks complete; re-running cleans
the leftover temp directory and starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from domainlm.errors import ConfigError

_CHUNK_BYTES = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output_dir(out: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp dir that becomes `out` on success; on failure it is removed and `out` untouched."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: output directory already exists; choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed run
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs get the usual permissions
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file through a temp name + rename, so readers never see half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; readers on a shared cluster need more
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_json(data: Any) -> str:
    """Stable JSON text (sorted keys off: declaration order is kept; deterministic for equal input)."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, to_json(data))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_files(paths: list[Path]) -> str:
    """One sha256 over the names and contents of `paths` (sorted), e.g. a tokenizer directory."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()
