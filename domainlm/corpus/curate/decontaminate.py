"""Reference (held-out / benchmark) text -> a set of word n-gram hashes -> contamination verdicts.

As in GPT-3's, datatrove's and Dolma's decontamination: a training document that shares word
n-grams (13 by default) with the reference text is removed. Words are the lowercased `\\w+` runs of
the normalized text, so case, whitespace and punctuation edits of a copied passage still match.
Each n-gram is a 64-bit hash (a polynomial over per-word blake2b hashes, computed in numpy), kept
in one sorted array with the index of the first reference document that contains it: ~16 bytes per
reference n-gram, so a 10M-word benchmark costs ~160 MB, and the index pickles fast to workers.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from domainlm.corpus.curate.config import DecontaminateConfig, NormalizeConfig
from domainlm.corpus.curate.normalize import normalize_text
from domainlm.corpus.fingerprint import corpus_fingerprint
from domainlm.corpus.readers import CorpusReader, name_apart
from domainlm.errors import DataError

_WORD = re.compile(r"\w+")
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier; uint64 arithmetic wraps, which is intended


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """The distinct word n-gram hashes of `text` (sorted uint64); a text under n words has none."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return np.empty(0, dtype=np.uint64)
    vocab = {
        w: int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little") for w in set(words)
    }
    ids = np.fromiter(map(vocab.__getitem__, words), dtype=np.uint64, count=len(words))
    count = len(words) - n + 1
    hashes = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(n):
            hashes = hashes * _BASE + ids[offset : offset + count]
    return np.unique(hashes)


@dataclass(frozen=True)
class Contamination:
    """The reference document sharing the most n-grams with a training document, and how many
    distinct reference n-grams the training document contains in all."""

    reference: str
    overlap: int


class ReferenceIndex:
    """Every n-gram of the reference files -> the first reference document (by id) containing it."""

    def __init__(self, config: DecontaminateConfig, normalize: NormalizeConfig) -> None:
        self.config = config
        self.ids: list[str] = []
        self.inputs: list[dict[str, Any]] = []
        chunks: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        readers = []
        for path in config.references:
            try:
                readers.append(CorpusReader(path, source="reference"))
            except DataError as error:
                raise DataError(f"decontaminate.references (--reference): {error}") from None
        name_apart(readers)  # mmlu/test.jsonl and arc/test.jsonl: ids that say which
        for path, reader in zip(config.references, readers, strict=True):
            before = len(self.ids)
            for doc in reader:
                hashes = ngram_hashes(normalize_text(doc.text, normalize), config.ngram_words)
                chunks.append(hashes)
                owners.append(np.full(len(hashes), len(self.ids), dtype=np.uint32))
                self.ids.append(doc.doc_id)
            self.inputs.append(
                {
                    "path": str(path),
                    "fingerprint": corpus_fingerprint(reader.files),
                    "documents": len(self.ids) - before,
                }
            )
        hashes = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.uint64)
        owner = np.concatenate(owners) if owners else np.empty(0, dtype=np.uint32)
        # Stable sort + first of each run: an n-gram belongs to the first document that has it.
        order = np.argsort(hashes, kind="stable")
        self.hashes, first = np.unique(hashes[order], return_index=True)
        self.owner = owner[order][first]

    def __len__(self) -> int:
        return len(self.hashes)

    def describe(self) -> dict[str, Any]:
        return {
            "references": self.inputs,
            "reference_documents": len(self.ids),
            "reference_ngrams": len(self),
        }

    def check(self, text: str) -> Contamination | None:
        """The verdict for one normalized training text (None: clean)."""
        if not len(self.hashes):
            return None
        hashes = ngram_hashes(text, self.config.ngram_words)
        positions = np.searchsorted(self.hashes, hashes)
        positions[positions == len(self.hashes)] = 0
        found = self.hashes[positions] == hashes
        overlap = int(found.sum())
        if overlap < self.config.min_overlap:
            return None
        owners = np.bincount(self.owner[positions[found]])
        return Contamination(self.ids[int(owners.argmax())], overlap)
