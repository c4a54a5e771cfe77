"""DocRecords in global document order -> keep / remove decisions (the signature merge).

This is the only sequential step: exact and near dedup need to see every earlier document. It
consumes records, never texts, so the same code merges records computed in one process pool or in
per-shard runs on different machines. "First seen wins": a duplicate always points at an earlier
kept document, so the result depends only on document order, not on how the work was split.
"""

from __future__ import annotations

from dataclasses import dataclass

from domainlm.corpus.curate.config import CurateConfig
from domainlm.corpus.curate.dedup_exact import ExactIndex
from domainlm.corpus.curate.dedup_near import NearIndex
from domainlm.corpus.curate.process import EMPTY_RULE, DocRecord


@dataclass(frozen=True)
class Removal:
    """Why a document was dropped: its stage, the rule (filters and normalize), a measurement, and
    for duplicates the id of the kept document it duplicates."""

    stage: str
    rule: str | None
    detail: str
    duplicate_of: str | None = None

    @property
    def key(self) -> str:
        return f"{self.stage}.{self.rule}" if self.stage == "filters" else self.stage

    def as_dict(self, record: DocRecord) -> dict:
        return {
            "id": record.doc_id,
            "source": record.source,
            "stage": self.stage,
            "rule": self.rule,
            "detail": self.detail,
            "duplicate_of": self.duplicate_of,
        }


class DedupMerger:
    """Holds the global dedup indexes; `decide` must be called in document order."""

    def __init__(self, config: CurateConfig) -> None:
        self.config = config
        self.exact = ExactIndex() if config.exact_dedup.enabled else None
        self.near = NearIndex(config.near_dedup) if config.near_dedup.enabled else None

    def decide(self, record: DocRecord) -> Removal | None:
        verdict = record.verdict
        if verdict is not None and verdict.rule == EMPTY_RULE:
            return Removal("normalize", EMPTY_RULE, verdict.detail)
        if self.exact is not None:
            earlier = self.exact.first_seen(record.digest, record.doc_id)
            if earlier is not None:
                return Removal("exact_dedup", None, "identical normalized text", earlier)
        if verdict is not None:
            return Removal("filters", verdict.rule, verdict.detail)
        if self.near is not None and record.signature is not None:
            match = self.near.first_match(record.signature, record.doc_id)
            if match is not None:
                detail = f"estimated Jaccard {match[1]:.3f} >= {self.config.near_dedup.threshold:g}"
                return Removal("near_dedup", None, detail, match[0])
        return None
