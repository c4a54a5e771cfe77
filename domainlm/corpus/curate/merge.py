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
from domainlm.corpus.curate.dedup_paragraph import ParagraphCut, ParagraphIndex
from domainlm.corpus.curate.process import EMPTY_RULE, DocRecord


@dataclass(frozen=True)
class Removal:
    """Why a document was dropped: its stage, the rule (filters and normalize), a measurement, for
    duplicates the id of the kept document it duplicates, and for contamination the reference
    document it overlaps and the number of distinct shared n-grams."""

    stage: str
    rule: str | None
    detail: str
    duplicate_of: str | None = None
    reference: str | None = None
    overlap_ngrams: int | None = None

    @property
    def key(self) -> str:
        return f"{self.stage}.{self.rule}" if self.stage == "filters" else self.stage

    def as_dict(self, record: DocRecord) -> dict:
        data = {
            "id": record.doc_id,
            "source": record.source,
            "stage": self.stage,
            "rule": self.rule,
            "detail": self.detail,
            "duplicate_of": self.duplicate_of,
        }
        if self.reference is not None:
            data.update(reference=self.reference, overlap_ngrams=self.overlap_ngrams)
        return data


class DedupMerger:
    """Holds the global dedup indexes; `decide` must be called in document order."""

    def __init__(self, config: CurateConfig) -> None:
        self.config = config
        self.exact = ExactIndex() if config.exact_dedup.enabled else None
        self.near = NearIndex(config.near_dedup) if config.near_dedup.enabled else None
        self.paragraphs = ParagraphIndex() if config.paragraph_dedup.enabled else None

    def decide(self, record: DocRecord) -> Removal | None:
        verdict = record.verdict
        if verdict is not None and verdict.rule == EMPTY_RULE:
            return Removal("normalize", EMPTY_RULE, verdict.detail)
        if self.exact is not None:
            earlier = self.exact.first_seen(record.digest, record.doc_id)
            if earlier is not None:
                return Removal("exact_dedup", None, "identical normalized text", earlier)
        if record.contamination is not None:
            found = record.contamination
            n = self.config.decontaminate.ngram_words
            detail = (
                f"{found.overlap} distinct {n}-grams shared with the reference (most with {found.reference})"
            )
            return Removal(
                "decontaminate", None, detail, reference=found.reference, overlap_ngrams=found.overlap
            )
        if verdict is not None:
            return Removal("filters", verdict.rule, verdict.detail)
        if self.near is not None and record.signature is not None:
            match = self.near.first_match(record.signature, record.doc_id)
            if match is not None:
                detail = f"estimated Jaccard {match[1]:.3f} >= {self.config.near_dedup.threshold:g}"
                return Removal("near_dedup", None, detail, match[0])
        return None

    def cut_paragraphs(self, record: DocRecord) -> tuple[Removal | None, ParagraphCut | None]:
        """For a kept document: the paragraphs that repeat earlier kept ones (None: none), or the
        document's removal when every paragraph does. Must follow `decide` in document order."""
        if self.paragraphs is None or not record.paragraphs:
            return None, None
        cut = self.paragraphs.cut(record.paragraphs)
        if cut is not None and len(cut.drop) == cut.paragraphs:
            return Removal(
                "paragraph_dedup", None, f"all {cut.paragraphs} paragraphs repeat earlier ones"
            ), None
        return None, cut
