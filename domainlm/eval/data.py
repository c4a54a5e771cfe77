"""`--data` specs (mix dirs, NAME=PATH corpora, shipped sample names) -> per-domain held-out text.

Every model reads the same raw text and tokenizes it with its own tokenizer, so bits per byte is
measured over identical bytes for all models. A mix directory contributes one domain per source,
from its held-out `val/<source>.jsonl.gz` (`domainlm.mix.manifest.held_out_texts`, which `vocab report
--corpus MIX` uses too); a corpus path or a shipped sample name (`finance`, `legal`, `medical`, `general`) contributes one domain with
all of its documents. Only the mix's raw text is used, never its token ids, so a model's tokenizer
need not be the mix's (comparing tokenizers is what bits per byte is for): nothing here checks it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from domainlm.assets import SAMPLE_DOMAINS, sample_corpus
from domainlm.corpus import CorpusReader
from domainlm.errors import ConfigError, DataError
from domainlm.mix.manifest import held_out_texts, is_mix_dir
from domainlm.naming import name_from_path, split_named

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalDomain:
    """One domain's held-out documents and where they came from."""

    name: str
    source: str
    texts: tuple[str, ...]

    @property
    def num_documents(self) -> int:
        return len(self.texts)

    @property
    def num_bytes(self) -> int:
        return sum(len(text.encode("utf-8")) for text in self.texts)


def parse_data_spec(spec: str) -> list[tuple[str, Path]]:
    """One `--data` value -> (domain name, path) pairs; nothing is read yet."""
    name, value = split_named(spec, "--data")
    path = Path(value).expanduser()
    if is_mix_dir(path):
        return held_out_texts(path, named=None if name is None else f"--data {spec!r}")
    if path.exists():
        return [(name or name_from_path(path), path)]
    if value in SAMPLE_DOMAINS:
        return [(name or value, sample_corpus(value))]
    if name is not None:
        return [(name, path)]  # a glob, or a missing file: the corpus reader says which
    raise ConfigError(
        f"--data {spec!r}: no such mix directory or corpus path, and not a shipped sample "
        f"({', '.join(SAMPLE_DOMAINS)}); pass a mix dir, a corpus path or NAME=PATH"
    )


def resolve_data_specs(specs: list[str]) -> list[tuple[str, Path]]:
    """All `--data` values -> unique (domain, path) pairs, validated before any text is read."""
    if not specs:
        raise ConfigError("--data: give at least one mix directory, corpus path or shipped sample name")
    pairs: list[tuple[str, Path]] = []
    for spec in specs:
        for name, path in parse_data_spec(spec):
            if any(name == seen for seen, _ in pairs):
                raise ConfigError(f"--data: domain {name!r} is given twice; name one of them with NAME=PATH")
            pairs.append((name, path))
    return pairs


def read_domain(name: str, path: Path, max_docs: int | None = None) -> EvalDomain:
    """The first `max_docs` documents (all when None) of one corpus, in file order."""
    reader = CorpusReader(path, source=name)
    texts = []
    for document in reader:
        if max_docs is not None and len(texts) >= max_docs:
            break
        texts.append(document.text)
    if reader.stats.num_skipped:
        logger.warning("%s: skipped %d unreadable or empty documents", path, reader.stats.num_skipped)
    if not texts:
        raise DataError(f"{path}: domain {name!r} has no readable documents; check the file")
    return EvalDomain(name=name, source=str(path), texts=tuple(texts))


def load_domains(specs: list[str], max_docs: int | None = None) -> list[EvalDomain]:
    """Parse, validate, then read every `--data` value (mix sources expand to one domain each)."""
    if max_docs is not None and max_docs < 1:
        raise ConfigError(f"--max-docs {max_docs}: must be at least 1 (or leave it out for all documents)")
    return [read_domain(name, path, max_docs) for name, path in resolve_data_specs(specs)]
