"""Corpus files -> one content fingerprint, the same wherever a stage records its inputs.

Used by curate's report, the tokenizer and extend manifests and each source of a mix manifest, so
one corpus has one fingerprint across all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from domainlm.outputs import fingerprint_files
from domainlm.storage.paths import as_path


def corpus_fingerprint(files: Iterable[Path], digests: Mapping[Path, str] | None = None) -> str:
    """sha256 over the names and bytes of a corpus's files; a folder (a saved `datasets` dataset)
    counts as every file inside it. `digests`: sha256s already computed (see fingerprint_files)."""
    return fingerprint_files([p for f in files for p in corpus_files(as_path(f))], digests)


def corpus_files(path: Path) -> list[Path]:
    """The files a corpus path stands for: itself, or every file in a (saved `datasets`) folder, sorted."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
