"""One corpus source -> its training tokens in a flat temp file, plus its held-out documents.

Documents stream from the reader in batches of about `BATCH_CHARS` characters (a thread reads and
parses the next batch while Rust tokenizes this one), are tokenized with an EOS after each, and are
appended to disk as they come, so memory is bounded by two batches whatever the corpus size.
Held-out documents are chosen by systematic sampling at a seeded phase: document i is held out
when floor((i+1)f + u) > floor(i f + u), which holds out round(n f) documents spread evenly over
the corpus, decided while streaming (no first pass to count documents).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import queue
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from domainlm.corpus import CorpusReader, Document
from domainlm.corpus.fingerprint import corpus_fingerprint
from domainlm.mix import layout
from domainlm.mix.encode import BatchEncoder

BATCH_CHARS = 2_000_000  # ~1 s of tokenizing on 2 cores: big enough for rayon, small for memory
BATCH_DOCS = 4096


@dataclass
class SourceTokens:
    """Counts of one tokenized source; paths are None in count-only (dry-run) mode."""

    name: str
    files: list[str]
    fingerprint: str
    train_path: Path | None = None  # flat tokens, one EOS after each document
    documents: int = 0
    tokens: int = 0
    text_bytes: int = 0  # UTF-8 bytes of all documents read (train + held out)
    val_documents: int = 0
    val_tokens: int = 0
    val_bytes: int = 0
    val_path: Path | None = None
    val_text_path: Path | None = None
    read: dict = field(default_factory=dict)


class HeldOut:
    """Systematic sample of a fraction `fraction` of document indices, phase drawn from the seed."""

    def __init__(self, fraction: float, seed: int, source: str) -> None:
        self.fraction = fraction
        self.phase = random.Random(f"domainlm.heldout/{seed}/{source}").random()

    def __call__(self, index: int) -> bool:
        f, u = self.fraction, self.phase
        return int((index + 1) * f + u) > int(index * f + u)


def _batches(documents: Iterator[Document]) -> Iterator[list[Document]]:
    batch, chars = [], 0
    for doc in documents:
        batch.append(doc)
        chars += len(doc.text)
        if chars >= BATCH_CHARS or len(batch) >= BATCH_DOCS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def prefetched(items: Iterator[list[Document]], depth: int = 2) -> Iterator[list[Document]]:
    """Run `items` in a thread, `depth` batches ahead; its exceptions re-raise here."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put(item)
            slots.put(done)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            slots.put(exc)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                slots.get(timeout=0.05)


def _relative_id(doc_id: str, base: str) -> str:
    return doc_id[len(base) :].lstrip("/") if doc_id.startswith(base) else doc_id


class _ValWriter:
    """Held-out tokens (flat) and text (gzip JSON Lines, mtime 0 so the bytes are reproducible)."""

    def __init__(self, token_path: Path, text_path: Path) -> None:
        self.tokens = open(token_path, "wb")  # noqa: SIM115 - closed in close()
        self._raw = open(text_path, "wb")  # noqa: SIM115 - closed in close()
        self.text = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)

    def write(self, tokens: np.ndarray, docs: list[Document], source: str, base: str) -> None:
        self.tokens.write(tokens.tobytes())
        for doc in docs:
            record = {"text": doc.text, "source": source, "id": _relative_id(doc.doc_id, base)}
            self.text.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))

    def close(self) -> None:
        self.tokens.close()
        self.text.close()
        self._raw.close()


def tokenize_source(
    name: str,
    reader: CorpusReader,
    encoder: BatchEncoder,
    val_fraction: float,
    seed: int,
    out_root: Path | None,
    on_batch: Callable[[int, int], None] | None = None,
) -> SourceTokens:
    """Tokenize every document of `reader`; with `out_root` (the mix being built), write its files:
    `.work/<name>.train.bin`, `val/<name>.bin` (unpacked yet) and `val/<name>.jsonl.gz`.

    `on_batch(documents, text_bytes)` is called after each batch (progress bars).
    """
    files = [Path(f) for f in reader.files]
    result = SourceTokens(name, [str(f) for f in files], corpus_fingerprint(files))
    base = os.path.commonpath([str(f.parent) for f in files])
    held_out = HeldOut(val_fraction, seed, name)
    train_out = val_out = None
    if out_root is not None:
        result.train_path = out_root / layout.work_token_path(name)
        result.val_path = out_root / layout.val_token_path(name)
        result.val_text_path = out_root / layout.val_text_path(name)
        for path in (result.train_path, result.val_path):
            path.parent.mkdir(parents=True, exist_ok=True)
        train_out = open(result.train_path, "wb")  # noqa: SIM115 - closed below
        val_out = _ValWriter(result.val_path, result.val_text_path)
    index = 0
    try:
        for batch in prefetched(_batches(iter(reader))):
            tokens, lengths = encoder.encode([doc.text for doc in batch])
            is_val = np.fromiter(
                (held_out(index + k) for k in range(len(batch))), dtype=bool, count=len(batch)
            )
            index += len(batch)
            batch_bytes = _count_batch(result, batch, tokens, lengths, is_val)
            if train_out is not None and val_out is not None:
                token_is_val = np.repeat(is_val, lengths)
                train_out.write(tokens[~token_is_val].tobytes())
                val_out.write(
                    tokens[token_is_val], [d for d, v in zip(batch, is_val, strict=True) if v], name, base
                )
            if on_batch is not None:
                on_batch(len(batch), batch_bytes)
    finally:
        if train_out is not None and val_out is not None:
            train_out.close()
            val_out.close()
    result.read = reader.stats.as_dict()
    return result


def _count_batch(
    result: SourceTokens, batch: list[Document], tokens: np.ndarray, lengths: np.ndarray, is_val: np.ndarray
) -> int:
    """Add one batch to the counts; return its UTF-8 bytes."""
    num_bytes = np.fromiter((len(d.text.encode("utf-8")) for d in batch), dtype=np.int64, count=len(batch))
    result.text_bytes += int(num_bytes.sum())
    result.val_documents += int(is_val.sum())
    result.val_tokens += int(lengths[is_val].sum())
    result.val_bytes += int(num_bytes[is_val].sum())
    result.documents += int((~is_val).sum())
    result.tokens += int(lengths[~is_val].sum())
    assert int(lengths.sum()) == len(tokens)
    return int(num_bytes.sum())
