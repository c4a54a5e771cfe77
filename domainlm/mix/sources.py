"""One corpus source -> its training tokens in a flat temp file, plus its held-out documents.

Documents stream from the reader in batches of about `BATCH_CHARS` characters (a thread reads and
parses the next batch while Rust tokenizes this one), are tokenized with an EOS after each, and are
appended to disk as they come, so memory is bounded by two batches whatever the corpus size.
Held-out documents are chosen by systematic sampling at a seeded phase: document i is held out
when floor((i+1)f + u) > floor(i f + u), which holds out round(n f) documents spread evenly over
the corpus, decided while streaming (no first pass to count documents).

With a token cache (`domainlm.mix.cache`) each input file is tokenized once: a miss tokenizes the
file and writes its entry while the mix's own files are written; a hit copies the entry's tokens in
batches and decodes text only for held-out documents. Both feed the same sink in document order,
so the mix's bytes do not depend on what was cached. Each entry records which encoder wrote its ids
(`SourceTokens.encoders` collects them for the manifest); a hit needs no encoder at all.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import queue
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from domainlm.corpus import CorpusReader, Document
from domainlm.corpus.fingerprint import corpus_fingerprint
from domainlm.corpus.readers import ReadStats
from domainlm.mix import layout
from domainlm.mix.cache import (
    TokenCache,
    cache_key,
    content_sha256,
    file_digests,
    file_stamp,
    reader_format,
)
from domainlm.mix.cache_entry import ArrayTokens, CacheEntry, FileTokens
from domainlm.mix.encode import BatchEncoder, LazyEncoder
from domainlm.storage.paths import as_path

log = logging.getLogger(__name__)

BATCH_CHARS = 2_000_000  # ~1 s of tokenizing on 2 cores: big enough for rayon, small for memory
BATCH_DOCS = 4096
MAX_PROBLEMS_KEPT = 20  # as CorpusReader keeps: merging files' stats keeps the same first problems
SKIP_COUNTS = ("malformed_lines", "non_utf8", "empty_files", "empty_documents")
OnBatch = Callable[[int, int], None]
AnyEncoder = BatchEncoder | LazyEncoder


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
    cached_files: int = 0  # files read from the token cache instead of tokenized
    encoders: list[str] = field(default_factory=list)  # what wrote each file's ids (files with documents)


class HeldOut:
    """Systematic sample of a fraction `fraction` of document indices, phase drawn from the seed."""

    def __init__(self, fraction: float, seed: int, source: str) -> None:
        self.fraction = fraction
        self.phase = random.Random(f"domainlm.heldout/{seed}/{source}").random()

    def __call__(self, index: int) -> bool:
        f, u = self.fraction, self.phase
        return int((index + 1) * f + u) > int(index * f + u)

    def mask(self, start: int, count: int) -> np.ndarray:
        """`self(i)` for i in [start, start + count), vectorized (the same float64 operations)."""
        index = np.arange(start, start + count, dtype=np.float64)
        f, u = self.fraction, self.phase
        return np.floor((index + 1) * f + u) > np.floor(index * f + u)


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


class _ValWriter:
    """Held-out tokens (flat) and text (gzip JSON Lines, mtime 0 so the bytes are reproducible)."""

    def __init__(self, token_path: Path, text_path: Path) -> None:
        self.tokens = open(token_path, "wb")  # noqa: SIM115 - closed in close()
        self._raw = open(text_path, "wb")  # noqa: SIM115 - closed in close()
        self.text = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)

    def write(self, tokens: np.ndarray, docs: Iterable[tuple[str, str]], source: str) -> None:
        """`docs`: (id, text); the reader's ids name files relative to the corpus path, so a corpus
        in s3://bucket/corpus/ and the same files in a local folder give the same held-out text."""
        self.tokens.write(tokens.tobytes())
        for doc_id, text in docs:
            record = {"text": text, "source": source, "id": doc_id}
            self.text.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))

    def close(self) -> None:
        self.tokens.close()
        self.text.close()
        self._raw.close()


TokenSpan = ArrayTokens | FileTokens  # a batch's tokens: in memory, or still in a cache entry
HeldDocs = Callable[[np.ndarray], Iterable[tuple[str, str]]]  # is_val mask -> (id, text) of those


class _SourceSink:
    """Where a source's documents go, in order, whether freshly tokenized or from the cache: counts,
    the held-out choice by document index, training tokens to the work file, held-out ones to val/."""

    def __init__(self, result: SourceTokens, held_out: HeldOut, out_root: Path | None) -> None:
        self.result, self.held_out, self.index = result, held_out, 0
        self.train = self.val = None
        if out_root is not None:
            result.train_path = out_root / layout.work_token_path(result.name)
            result.val_path = out_root / layout.val_token_path(result.name)
            result.val_text_path = out_root / layout.val_text_path(result.name)
            for path in (result.train_path, result.val_path):
                path.parent.mkdir(parents=True, exist_ok=True)
            self.train = open(result.train_path, "wb")  # noqa: SIM115 - closed in close()
            self.val = _ValWriter(result.val_path, result.val_text_path)

    @property
    def needs_text(self) -> bool:
        """Held-out text is written only for a real mix with a validation split."""
        return self.val is not None and self.held_out.fraction > 0

    def add(self, tokens: TokenSpan, lengths: np.ndarray, num_bytes: np.ndarray, held: HeldDocs) -> None:
        is_val = self.held_out.mask(self.index, len(lengths))
        self.index += len(lengths)
        r = self.result
        r.text_bytes += int(num_bytes.sum())
        r.val_documents += int(is_val.sum())
        r.val_tokens += int(lengths[is_val].sum())
        r.val_bytes += int(num_bytes[is_val].sum())
        r.documents += int((~is_val).sum())
        r.tokens += int(lengths[~is_val].sum())
        assert int(lengths.sum()) == len(tokens)
        if self.train is None or self.val is None:
            return
        # Held-out documents are few: copy the training runs between them as they are (no mask
        # over every token), and gather only the held-out tokens.
        ends = np.cumsum(lengths)
        held_tokens, done = [], 0
        for k in np.flatnonzero(is_val).tolist():
            start = int(ends[k] - lengths[k])
            tokens.copy_to(self.train, done, start)
            held_tokens.append(tokens.read(start, int(ends[k])))
            done = int(ends[k])
        tokens.copy_to(self.train, done, len(tokens))
        if held_tokens:
            self.val.write(np.concatenate(held_tokens), held(is_val), r.name)

    def close(self) -> None:
        if self.train is not None and self.val is not None:
            self.train.close()
            self.val.close()


def _merge_stats(per_file: list[dict]) -> dict:
    """One source's ReadStats dict from its files' (counts summed, the first problems kept)."""
    merged = ReadStats().as_dict()
    for stats in per_file:
        for key, value in stats.items():
            merged[key] = merged[key] + value  # numbers add, problem lists concatenate
    merged["problems"] = merged["problems"][:MAX_PROBLEMS_KEPT]
    return merged


def _encode_file(
    reader: CorpusReader, encoder: AnyEncoder, sink: _SourceSink, writer, on_batch: OnBatch
) -> dict:
    """Read and tokenize one file into the sink (and a new cache entry); return its read stats."""
    for batch in prefetched(_batches(iter(reader))):
        texts = [doc.text for doc in batch]
        tokens, lengths = encoder.encode(texts)
        utf8 = [text.encode("utf-8") for text in texts]
        num_bytes = np.fromiter(map(len, utf8), dtype=np.int64, count=len(utf8))
        held = lambda is_val, batch=batch: (  # noqa: E731 - consumed inside sink.add
            (d.doc_id, d.text) for d, v in zip(batch, is_val.tolist(), strict=True) if v
        )
        sink.add(ArrayTokens(tokens), lengths, num_bytes, held)
        if writer is not None:
            name = reader.names[0]  # an entry stores ids after the file's name: it is keyed by content
            writer.add(tokens, lengths, utf8, [doc.doc_id.removeprefix(name) for doc in batch])
        on_batch(len(batch), int(num_bytes.sum()))
    return reader.stats.as_dict()


def _replay_entry(entry: CacheEntry, file: str, name: str, sink: _SourceSink, on_batch: OnBatch) -> dict:
    """A cached file into the sink: tokens copied in batches, text decoded only for held-out documents
    (ids under the file's `name`, problems under its path `file`)."""
    for batch in entry.batches(with_text=sink.needs_text):
        held = lambda is_val, batch=batch: (  # noqa: E731 - consumed inside sink.add
            entry.document(batch, int(i), name) for i in np.flatnonzero(is_val)
        )
        sink.add(batch.tokens, batch.lengths, batch.num_bytes, held)
        on_batch(len(batch.lengths), int(batch.num_bytes.sum()))
    return entry.read_stats(file)


def cached_file(
    cache: TokenCache,
    reader: CorpusReader,
    encoder: AnyEncoder,
    sink: _SourceSink,
    on_batch: OnBatch,
    digests: dict[Path, str],
    stamp: tuple | None,
) -> dict:
    """One file through the cache: replay a hit, or tokenize it and write the entry on a miss
    (kept only if the file's size and mtime are still `stamp`, taken before it was hashed)."""
    path = reader.files[0]
    inputs = entry_inputs(path, reader.text_field, encoder, digests)
    key = cache_key(inputs)
    entry = cache.open(key, inputs)
    if entry is not None:
        if reader.strict and any(v for k, v in entry.meta["read"].items() if k in SKIP_COUNTS):
            for _ in reader:  # a strict run fails on the first skipped line, exactly as uncached
                pass
        stats = _replay_entry(entry, str(path), reader.names[0], sink, on_batch)
        entry.touch(path)
        sink.result.cached_files += 1
        _note_encoder(sink.result, entry.meta.get("encoder"))
        return stats
    writer = cache.writer(key, inputs, path, encoder.loaded.dtype)
    try:
        stats = _encode_file(reader, encoder, sink, writer, on_batch)
    except BaseException:
        writer.abort()
        raise
    _note_encoder(sink.result, encoder.encoder_name)
    if file_stamp(path) == stamp:
        writer.commit(stats, encoder.encoder_name)
    else:  # edited while we read it: these tokens may not be those of the hashed bytes
        log.warning("%s changed while it was tokenized; not caching it", path)
        writer.abort()
    return stats


def _note_encoder(result: SourceTokens, name: str | None) -> None:
    """None: nothing was encoded (a file without documents), so no encoder wrote anything."""
    if name is not None:
        result.encoders.append(name)


def entry_inputs(
    path: Path, text_field: str, encoder: AnyEncoder, digests: dict[Path, str] | None = None
) -> dict:
    """What the tokens of `path` depend on (the cache key): its bytes, the tokenizer, the reader.
    Not the encoder: tiktoken and splitting long documents run only where proved to give the
    tokenizer's own ids, so the ids are the same whichever ran (and none is built for a hit)."""
    loaded = encoder.loaded
    return {
        "content_sha256": content_sha256(path, digests),
        "tokenizer_fingerprint": loaded.fingerprint,
        "eos_token_id": loaded.eos_token_id,
        "dtype": loaded.dtype.name,
        "reader": {"format": reader_format(path), "text_field": text_field},
    }


def tokenize_source(
    name: str,
    reader: CorpusReader,
    encoder: AnyEncoder,
    val_fraction: float,
    seed: int,
    out_root: Path | None,
    on_batch: OnBatch | None = None,
    *,
    cache: TokenCache | None = None,
) -> SourceTokens:
    """Tokenize every document of `reader`, file by file, through `cache` when given (a hit reads
    the file's entry instead of the file); with `out_root` (the mix being built), write its files:
    `.work/<name>.train.bin`, `val/<name>.bin` (unpacked yet) and `val/<name>.jsonl.gz`.

    The outputs do not depend on which files were cached. `on_batch(documents, text_bytes)` is
    called after each batch (progress bars).
    """
    files = [as_path(f) for f in reader.files]  # Path, or RemotePath for s3://... (streamed)
    stamps = {f: file_stamp(f) for f in files}
    digests = file_digests(files) if cache is not None else {}  # each file read once for both
    result = SourceTokens(name, [str(f) for f in files], corpus_fingerprint(files, digests))
    sink = _SourceSink(result, HeldOut(val_fraction, seed, name), out_root)
    on_batch = on_batch or (lambda num_docs, num_bytes: None)
    per_file = []
    try:
        for path in files:
            file_reader = reader.for_file(path)
            if cache is None:
                per_file.append(_encode_file(file_reader, encoder, sink, None, on_batch))
                _note_encoder(result, encoder.encoder_name)
            else:
                per_file.append(
                    cached_file(cache, file_reader, encoder, sink, on_batch, digests, stamps[path])
                )
    finally:
        sink.close()
    result.read = _merge_stats(per_file)
    return result
