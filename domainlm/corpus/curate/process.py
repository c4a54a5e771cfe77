"""Documents -> DocRecords: the per-document work (normalize, digest, rules, MinHash, redact), run in
a process pool with bounded in-flight batches and results returned in input order.

Everything here is a pure function of (document, config), which is what makes the output
independent of the number of workers and lets shards compute records on different machines.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from domainlm.corpus.curate.config import CurateConfig
from domainlm.corpus.curate.decontaminate import Contamination, ReferenceIndex
from domainlm.corpus.curate.dedup_exact import text_digest
from domainlm.corpus.curate.dedup_near import MinHasher
from domainlm.corpus.curate.dedup_paragraph import ParagraphKey, paragraph_keys
from domainlm.corpus.curate.filters import QualityFilter, Verdict, count_words
from domainlm.corpus.curate.normalize import normalize_text
from domainlm.corpus.curate.redact import Redactor
from domainlm.corpus.readers import Document

# Batches queued per worker: enough to keep every core busy, few enough that memory stays bounded
# (the reader is pulled only as fast as results are consumed).
_IN_FLIGHT_PER_WORKER = 4
EMPTY_RULE = "empty"


@dataclass
class DocRecord:
    """Everything the global (sequential) decisions need about one document.

    `text` is the output text (normalized, then redacted); shard runs drop it to keep signature files
    small and re-read the corpus when writing. `verdict` is a filter verdict, or the normalize
    stage's 'empty' verdict for documents that normalize to nothing. `contamination` is set when
    the document shares n-grams with the reference text; `paragraphs` holds the paragraph digests
    of the output text when paragraph dedup is on.
    """

    ordinal: int
    doc_id: str
    source: str
    num_words: int
    digest: bytes
    verdict: Verdict | None
    signature: np.ndarray | None
    redactions: dict[str, int]
    text: str | None
    contamination: Contamination | None = None
    paragraphs: list[ParagraphKey] | None = None


class DocProcessor:
    """Built once per process from the config (MinHash permutations, compiled rules)."""

    def __init__(self, config: CurateConfig, references: ReferenceIndex | None = None) -> None:
        self.config = config
        self.references = references
        self.quality = QualityFilter(config.filters)
        self.quality_by_source = {name: QualityFilter(f) for name, f in config.source_filters.items()}
        self.minhasher = MinHasher(config.near_dedup) if config.near_dedup.enabled else None
        self.redactor = Redactor(config.redact)

    def finalize(self, text: str) -> tuple[str, dict[str, int]]:
        """Raw text -> the text written out (normalized, redacted) and the redaction counts."""
        return self.redactor.redact(normalize_text(text, self.config.normalize))

    def process(self, ordinal: int, doc: Document, repeat: bool = False) -> DocRecord:
        """`repeat`: the raw text was seen before, so exact dedup will drop it; skip rules and MinHash."""
        text = normalize_text(doc.text, self.config.normalize)
        verdict = Verdict(EMPTY_RULE, "nothing left after normalization") if not text.strip() else None
        if not repeat:
            verdict = verdict or self.quality_by_source.get(doc.source, self.quality).check(text)
        # Signatures only for documents that can reach near-dedup: the expensive part of the stage.
        wants_signature = self.minhasher is not None and verdict is None and not repeat
        signature = self.minhasher.signature(text) if wants_signature else None
        output, redactions = self.redactor.redact(text)
        # Repeats are removed by exact dedup before these stages, so they skip the work.
        contamination = self.references.check(text) if self.references and not repeat else None
        paragraphs = None
        if self.config.paragraph_dedup.enabled and verdict is None and not repeat:
            paragraphs = paragraph_keys(output, self.config.paragraph_dedup)
        return DocRecord(
            ordinal=ordinal,
            doc_id=doc.doc_id,
            source=doc.source,
            num_words=count_words(text),
            digest=text_digest(text, self.config.exact_dedup.digest_bytes),
            verdict=verdict,
            signature=signature,
            redactions=redactions,
            text=output,
            contamination=contamination,
            paragraphs=paragraphs,
        )


_worker: DocProcessor | None = None


def _init_worker(config: CurateConfig, references: ReferenceIndex | None = None) -> None:
    global _worker
    _worker = DocProcessor(config, references)


def _process_batch(batch: list[tuple[int, Document, bool]]) -> list[DocRecord]:
    assert _worker is not None, "worker not initialized"
    return [_worker.process(ordinal, doc, repeat) for ordinal, doc, repeat in batch]


def mark_repeats(
    docs: Iterable[tuple[int, Document]], config: CurateConfig
) -> Iterator[tuple[int, Document, bool]]:
    """Flag documents whose raw text was seen before: exact dedup will remove them whatever the
    rules say, so workers only normalize and hash them. A crawl with many verbatim copies then
    costs little more than its unique part. Memory: one digest per distinct raw text."""
    seen: set[bytes] = set()
    for ordinal, doc in docs:
        if not config.exact_dedup.enabled:
            yield ordinal, doc, False
            continue
        digest = text_digest(doc.text, config.exact_dedup.digest_bytes)
        yield ordinal, doc, digest in seen
        seen.add(digest)


def _finalize_batch(batch: list[tuple[int, Document]]) -> list[tuple[int, Document, str]]:
    assert _worker is not None, "worker not initialized"
    return [(ordinal, doc, _worker.finalize(doc.text)[0]) for ordinal, doc in batch]


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def pool_context() -> multiprocessing.context.BaseContext:
    """forkserver by default: workers fork from a clean, single-threaded server that has already
    imported this module, so they start fast and never inherit the progress bar's thread or its
    locks. DOMAINLM_MP_START=fork|spawn overrides it (the benchmark uses fork so that the workers'
    CPU time is reaped by, and charged to, the measured process)."""
    method = os.environ.get("DOMAINLM_MP_START", "forkserver")
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload([__name__])
    return context


def ordered_map(
    function: Callable[[list[Any]], list[Any]],
    batches: Iterable[list[Any]],
    config: CurateConfig,
    workers: int,
    references: ReferenceIndex | None = None,
) -> Iterator[Any]:
    """Apply a module-level batch function in `workers` processes; items come back in input order."""
    if workers <= 1:
        _init_worker(config, references)
        for batch in batches:
            yield from function(batch)
        return
    with pool_context().Pool(workers, initializer=_init_worker, initargs=(config, references)) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.apply_async(function, (batch,)))
            if len(pending) >= workers * _IN_FLIGHT_PER_WORKER:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def process_documents(
    docs: Iterable[tuple[int, Document]],
    config: CurateConfig,
    workers: int,
    references: ReferenceIndex | None = None,
) -> Iterator[DocRecord]:
    """(ordinal, Document) pairs -> DocRecords in the same order."""
    batches = batched(mark_repeats(docs, config), config.batch_docs)
    return ordered_map(_process_batch, batches, config, workers, references)


def finalize_documents(
    docs: Iterable[tuple[int, Document]], config: CurateConfig, workers: int
) -> Iterator[tuple[int, Document, str]]:
    """(ordinal, Document) pairs -> (ordinal, Document, output text) in the same order."""
    return ordered_map(_finalize_batch, batched(docs, config.batch_docs), config, workers)
