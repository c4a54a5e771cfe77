"""CLI corpus arguments (`PATH` or `NAME=PATH`) -> named CorpusReaders -> one numbered document stream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from domainlm.corpus.fingerprint import corpus_fingerprint
from domainlm.corpus.readers import CorpusReader, Document, name_apart
from domainlm.errors import ConfigError
from domainlm.naming import split_named


@dataclass(frozen=True)
class CorpusSpec:
    """One corpus: the source name its documents carry (and its output file's name) and its paths."""

    source: str
    paths: tuple[str, ...]
    text_field: str = "text"


def parse_corpus_args(args: list[str], text_field: str = "text") -> list[CorpusSpec]:
    """`legal=data/legal/` or `data/legal.jsonl.gz` (source = file name before the first dot).

    Paths are checked here (a missing file is a DataError), before any work starts.
    """
    if not args:
        raise ConfigError(
            "no corpus given; pass one or more corpus paths, e.g. domainlm curate data/legal.jsonl.gz"
        )
    specs: list[CorpusSpec] = []
    for arg in args:
        name, path = split_named(arg, "CORPUS")
        reader = CorpusReader(path, source=name, text_field=text_field)
        specs.append(CorpusSpec(reader.source, (path,), text_field))
    names = [spec.source for spec in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"corpus name(s) {', '.join(repeated)} given more than once; name them apart as NAME=PATH "
            "(each source gets its own output file)"
        )
    return specs


def build_readers(specs: list[CorpusSpec]) -> list[CorpusReader]:
    """One reader per corpus; ids name files apart across corpora (a `duplicate_of` says which)."""
    readers = [
        CorpusReader(list(spec.paths), source=spec.source, text_field=spec.text_field) for spec in specs
    ]
    name_apart(readers)
    return readers


def iter_documents(readers: list[CorpusReader]) -> Iterator[tuple[int, Document]]:
    """Every document of every corpus, numbered 0, 1, ... in argument order (the global order)."""
    ordinal = 0
    for reader in readers:
        for doc in reader:
            yield ordinal, doc
            ordinal += 1


def describe_inputs(
    readers: list[CorpusReader], read_stats: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The report's `inputs`: names, files, a content fingerprint and what the readers skipped
    (`read_stats` when the reading happened in other processes, else the readers' own stats)."""
    entries = []
    for index, reader in enumerate(readers):
        entries.append(
            {
                "source": reader.source,
                "paths": [str(p) for p in reader.files],
                "fingerprint": corpus_fingerprint(reader.files),
                "read": read_stats[index] if read_stats is not None else reader.stats.as_dict(),
            }
        )
    return entries
