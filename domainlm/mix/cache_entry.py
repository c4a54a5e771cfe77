"""One token cache entry on disk: written in a batch stream, verified, read back in batches.

Layout of `<cache root>/<key>/` (format CACHE_FORMAT), one input file's documents as `mix` reads them:
- `tokens.bin`: flat token ids in the mix dtype, one EOS after each document (BatchEncoder.encode);
- `ends.npy`, `bytes.npy`: int64 per document, its token end offset and its UTF-8 byte count;
- `text.zst`: the documents' UTF-8 text back to back, in independent zstd frames of whole documents
  (about FRAME_BYTES of text each; `frames.npy`: int64 (first document, byte offset) of each frame),
  so a warm re-mix decompresses only the frames holding held-out documents (~6% of the text at
  val_fraction 0.01 and 10 KB documents) to write `val/<name>.jsonl.gz` without re-reading and
  re-parsing the corpus; `ids.zst`: each document's id after the file's name (":12"), one JSON
  string a line, one zstd stream;
- `meta.json` (last): key inputs, counts, the reader's skip counts, size and xxh3-128 checksum of
  every data file (it guards against torn or flipped bytes, not tampering; ~10x cheaper than sha256,
  which a warm re-mix would otherwise spend a third of its CPU on), created, last_used, and `encoder`: what wrote the ids ("tiktoken" or "tokenizers", the same
  ids by proof; null when the file had no documents to encode), so a warm re-mix's manifest can name
  it without building an encoder.
Ids and problems are stored without their file's name or path: the entry is keyed by content, the file moves.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import io
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash
import zstandard

from domainlm.outputs import file_digest, remove_tree

# bump when the reader or this layout changes what an entry means (v3: the key no longer holds the
# encoder's split_long setting, meta.json names the encoder; v4: data files checked by xxh3-128)
CACHE_FORMAT = "domainlm.tokens/v4"


def file_checksum(path: Path) -> str:
    """xxh3-128 of a file's bytes (hex): a corruption check at ~10 GB/s."""
    return file_digest(path, xxhash.xxh3_128())


DATA_FILES = ("tokens.bin", "ends.npy", "bytes.npy", "text.zst", "frames.npy", "ids.zst")
FRAME_BYTES = 1 << 16  # text per zstd frame: 0.30 of the text compressed (0.27 as one frame)
META_NAME = "meta.json"
TEMP_PREFIX = ".tmp-"  # entries under construction (and pruned ones on their way out)
BATCH_TOKENS = 1 << 22  # tokens per batch read back: 8 MiB of uint16, whatever the file size
BATCH_DOCS = 1 << 14
_ZSTD_LEVEL = 1  # ~2.5 ms/MB of text to compress to 0.27 of its size; level 3 costs 3x for 0.23
_NPY_DTYPE = np.dtype("<i8")
_NPY_HEADER_BYTES = 128  # a 1-D int64 .npy header pads to 128 bytes for any length below 2**63


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def lock_dir(directory: Path) -> int:
    """flock on the directory itself (held while it is built; the kernel drops it if we die)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _NpyStream:
    """An int64 .npy file written in pieces: placeholder header first, the real one at close."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.handle.write(b"\0" * _NPY_HEADER_BYTES)
        self.count = 0

    def write(self, values: np.ndarray) -> None:
        self.handle.write(values.astype(_NPY_DTYPE, copy=False).tobytes())
        self.count += len(values)

    def close(self) -> None:
        header = io.BytesIO()
        fields = {"descr": _NPY_DTYPE.str, "fortran_order": False, "shape": (self.count,)}
        np.lib.format.write_array_header_1_0(header, fields)
        assert len(header.getvalue()) == _NPY_HEADER_BYTES
        self.handle.seek(0)
        self.handle.write(header.getvalue())
        self.handle.close()


def _zstd_writer(path: Path) -> zstandard.ZstdCompressionWriter:
    # One compressor per stream: a ZstdCompressor holds one context that two open streams would share.
    compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
    return compressor.stream_writer(open(path, "wb"), closefd=True)  # noqa: SIM115 - closed with it


def _zstd_reader(path: Path) -> io.BufferedReader:
    raw = open(path, "rb")  # noqa: SIM115 - closed with the reader
    return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True), 1 << 20)


def _relative(text: str, prefix: str) -> list:
    return ["rel", text[len(prefix) :]] if text.startswith(prefix) else ["abs", text]


def _absolute(item: list, prefix: str) -> str:
    return prefix + item[1] if item[0] == "rel" else item[1]


class EntryWriter:
    """Builds one entry in a locked temp dir inside the root; `commit` renames it into place."""

    def __init__(self, root: Path, key: str, inputs: dict, source_file: Path, dtype: np.dtype) -> None:
        self.root, self.key, self.inputs, self.file, self.dtype = root, key, inputs, str(source_file), dtype
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{key[:16]}-", dir=root))
        self._lock = lock_dir(self.tmp)
        os.chmod(self.tmp, 0o777 & ~umask())  # a shared cache: the usual permissions, not mkdtemp's 0700
        self.tokens = open(self.tmp / "tokens.bin", "wb")  # noqa: SIM115 - closed in _close()
        self.ends, self.bytes = _NpyStream(self.tmp / "ends.npy"), _NpyStream(self.tmp / "bytes.npy")
        self.text = open(self.tmp / "text.zst", "wb")  # noqa: SIM115 - closed in _close()
        self.ids = _zstd_writer(self.tmp / "ids.zst")
        self.compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
        self.frame: list[bytes] = []  # documents of the frame being filled
        self.frames: list[tuple[int, int]] = []  # (first document, offset in text.zst)
        self.num_tokens = self.num_docs = self.num_bytes = self.frame_bytes = 0

    def add(self, tokens: np.ndarray, lengths: np.ndarray, utf8: list[bytes], doc_ids: list[str]) -> None:
        """One batch of documents: their tokens (EOS after each), token counts, UTF-8 text and ids
        after the file's name (":12"; "" for a text file)."""
        self.tokens.write(memoryview(np.ascontiguousarray(tokens)))
        self.ends.write(self.num_tokens + np.cumsum(lengths))
        sizes = np.fromiter(map(len, utf8), dtype=np.int64, count=len(utf8))
        self.bytes.write(sizes)
        for k, text in enumerate(utf8):
            if not self.frame:
                self.frames.append((self.num_docs + k, self.text.tell()))
            self.frame.append(text)
            self.frame_bytes += len(text)
            if self.frame_bytes >= FRAME_BYTES:
                self._flush_frame()
        suffixes = (json.dumps(i, ensure_ascii=False) + "\n" for i in doc_ids)
        self.ids.write("".join(suffixes).encode("utf-8"))
        self.num_tokens += len(tokens)
        self.num_docs += len(utf8)
        self.num_bytes += int(sizes.sum())

    def _flush_frame(self) -> None:
        self.text.write(self.compressor.compress(b"".join(self.frame)))
        self.frame, self.frame_bytes = [], 0

    def _close(self) -> None:
        if self.frame:
            self._flush_frame()
        for handle in (self.tokens, self.ends, self.bytes, self.text, self.ids):
            handle.close()
        np.save(self.tmp / "frames.npy", np.array(self.frames, dtype=_NPY_DTYPE).reshape(-1, 2))

    def _meta(self, read_stats: dict, encoder: str | None) -> dict:
        files = {
            n: {"bytes": (self.tmp / n).stat().st_size, "xxh3_128": file_checksum(self.tmp / n)}
            for n in DATA_FILES
        }
        problems = [_relative(p, self.file) for p in read_stats.get("problems", [])]
        created = now()
        return {
            "format": CACHE_FORMAT, "key": self.key, "inputs": self.inputs, "file": self.file,
            "documents": self.num_docs, "tokens": self.num_tokens, "text_bytes": self.num_bytes,
            "dtype": self.dtype.name, "read": dict(read_stats, problems=problems), "files": files,
            "created": created, "last_used": created, "encoder": encoder,
        }  # fmt: skip

    def commit(self, read_stats: dict, encoder: str | None = None) -> Path:
        """Finish the files, write meta.json last, rename into place. If another process renamed the
        same key first, keep theirs (same inputs, same bytes) and drop ours. `encoder`: what wrote the
        ids (None: nothing was encoded)."""
        self._close()
        meta = self._meta(read_stats, encoder)
        (self.tmp / META_NAME).write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
        final = self.root / self.key
        try:
            os.rename(self.tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            remove_tree(self.tmp)
        finally:
            os.close(self._lock)
        return final

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._close()
        os.close(self._lock)
        remove_tree(self.tmp)


class ArrayTokens:
    """A batch's tokens in memory (freshly encoded)."""

    def __init__(self, tokens: np.ndarray) -> None:
        self.tokens = np.ascontiguousarray(tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.tokens[start:stop]

    def copy_to(self, out: io.BufferedWriter, start: int, stop: int) -> None:
        out.write(memoryview(self.tokens)[start:stop])


class FileTokens:
    """A batch's tokens left in the entry's tokens.bin: training runs are copied file to file by
    the kernel (copy_file_range: no trip through Python; a reflink where the filesystem can), only
    held-out documents' tokens are read."""

    def __init__(self, fd: int, first: int, count: int, dtype: np.dtype) -> None:
        self.fd, self.first, self.count, self.dtype = fd, first, count, dtype

    def __len__(self) -> int:
        return self.count

    def read(self, start: int, stop: int) -> np.ndarray:
        size = (stop - start) * self.dtype.itemsize
        data = os.pread(self.fd, size, (self.first + start) * self.dtype.itemsize)
        if len(data) != size:
            raise OSError("token file ended early")  # sizes were verified: it changed under us
        return np.frombuffer(data, dtype=self.dtype)

    def copy_to(self, out: io.BufferedWriter, start: int, stop: int) -> None:
        out.flush()  # the copy writes at the file's offset, after what is buffered
        offset, left = (self.first + start) * self.dtype.itemsize, (stop - start) * self.dtype.itemsize
        while left:
            try:
                done = os.copy_file_range(self.fd, out.fileno(), left, offset)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                done = os.write(out.fileno(), os.pread(self.fd, min(left, 1 << 24), offset))
            if done == 0:
                raise OSError("token file ended early")
            offset, left = offset + done, left - done


@dataclass
class EntryBatch:
    """Documents first .. first + len(lengths) - 1 of an entry; `ids` only when asked for."""

    first: int
    tokens: FileTokens
    lengths: np.ndarray
    num_bytes: np.ndarray
    ids: list[bytes] | None = None


class _TextFrames:
    """Random access to documents' text: decompress the one frame holding a document (the last kept)."""

    def __init__(self, directory: Path, sizes: np.ndarray) -> None:
        frames = np.load(directory / "frames.npy")
        self.first_docs, self.offsets = (
            frames[:, 0],
            np.append(frames[:, 1], (directory / "text.zst").stat().st_size),
        )
        self.starts = np.concatenate([[0], np.cumsum(sizes)])  # each document's offset in the whole text
        self.handle = open(directory / "text.zst", "rb")  # noqa: SIM115 - closed in close()
        self.frame, self.data = -1, b""

    def text(self, doc: int) -> str:
        frame = int(np.searchsorted(self.first_docs, doc, side="right")) - 1
        if frame != self.frame:
            self.handle.seek(int(self.offsets[frame]))
            compressed = self.handle.read(int(self.offsets[frame + 1] - self.offsets[frame]))
            self.frame, self.data = frame, zstandard.ZstdDecompressor().decompress(compressed)
        base = int(self.starts[self.first_docs[frame]])
        return self.data[int(self.starts[doc]) - base : int(self.starts[doc + 1]) - base].decode("utf-8")

    def close(self) -> None:
        self.handle.close()


class CacheEntry:
    """A verified entry, read back in batches (no mapping, tokens not loaded: RSS stays flat)."""

    def __init__(self, directory: Path, meta: dict) -> None:
        self.directory, self.meta = directory, meta
        self.dtype = np.dtype(meta["dtype"])
        self._frames: _TextFrames | None = None

    def read_stats(self, file: str) -> dict:
        """The reader's counts for this file, its problems under the path it was read as now."""
        stats = dict(self.meta["read"])
        stats["problems"] = [_absolute(p, file) for p in stats.get("problems", [])]
        return stats

    def _offsets(self) -> tuple[np.ndarray, np.ndarray]:
        ends, sizes = (
            np.fromfile(self.directory / n, _NPY_DTYPE, offset=_NPY_HEADER_BYTES) for n in DATA_FILES[1:3]
        )
        return ends, sizes

    def document(self, batch: EntryBatch, index: int, name: str) -> tuple[str, str]:
        """(doc id, text) of the batch's `index`-th document (the batch was read with ids); `name`:
        the file's name in ids (CorpusReader.names)."""
        return name + json.loads(batch.ids[index]), self._frames.text(batch.first + index)

    def batches(self, with_text: bool) -> Iterator[EntryBatch]:
        """Consecutive batches of documents (16 bytes per document held; tokens stay in the file)."""
        ends, sizes = self._offsets()
        with contextlib.ExitStack() as stack:
            fd = os.open(self.directory / "tokens.bin", os.O_RDONLY)
            stack.callback(os.close, fd)
            if with_text:
                ids = stack.enter_context(_zstd_reader(self.directory / "ids.zst"))
                self._frames = _TextFrames(self.directory, sizes)
                stack.callback(self._frames.close)
            start, done = 0, 0
            while start < len(ends):
                stop = int(np.searchsorted(ends, done + BATCH_TOKENS, side="right"))
                stop = min(max(stop, start + 1), start + BATCH_DOCS)
                lengths = np.diff(ends[start:stop], prepend=done)
                batch_tokens = FileTokens(fd, done, int(ends[stop - 1]) - done, self.dtype)
                batch = EntryBatch(start, batch_tokens, lengths, sizes[start:stop])
                if with_text:
                    batch.ids = [ids.readline() for _ in range(stop - start)]
                yield batch
                start, done = stop, int(ends[stop - 1])

    def touch(self, file: Path) -> None:
        """Record this use (last_used, the path it was read as) by an atomic replace of meta.json;
        an entry pruned meanwhile stays gone."""
        meta = dict(self.meta, last_used=now(), file=str(file))
        with contextlib.suppress(FileNotFoundError):
            fd, tmp = tempfile.mkstemp(prefix=".meta-", dir=self.directory)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(meta, indent=2) + "\n")
            os.chmod(tmp, 0o666 & ~umask())
            os.replace(tmp, self.directory / META_NAME)


_META_TYPES = {
    "inputs": dict, "documents": int, "tokens": int, "text_bytes": int, "dtype": str, "read": dict, "files": dict,
}  # fmt: skip


def entry_problem(directory: Path, meta: object, inputs: dict) -> str | None:
    """What is wrong with an entry (None: nothing): its meta, then each data file's size and checksum,
    then the offsets against the counts. Reads every data file once (~1 ms per MB of text)."""
    if not isinstance(meta, dict) or any(not isinstance(meta.get(k), t) for k, t in _META_TYPES.items()):
        return "meta.json lacks required fields"
    if meta.get("format") != CACHE_FORMAT or meta["inputs"] != inputs:
        return "meta.json describes other inputs than its key"
    if not isinstance(meta.get("encoder"), str | None):
        return "meta.json names no valid encoder"
    for name in DATA_FILES:
        expected = meta["files"].get(name)
        if not isinstance(expected, dict):
            return f"meta.json has no checksum for {name}"
        size = (directory / name).stat().st_size
        if size != expected.get("bytes"):
            return f"{name} has {size} bytes, meta.json says {expected.get('bytes')}"
        if file_checksum(directory / name) != expected.get("xxh3_128"):
            return f"{name} does not match its checksum in meta.json"
    ends, sizes = CacheEntry(directory, meta)._offsets()
    if len(ends) != meta["documents"] or len(sizes) != len(ends):
        return "document offsets do not match the document count"
    frames = np.load(directory / "frames.npy")
    if frames.ndim != 2 or frames.shape[1:] != (2,) or (len(frames) > 0) != (meta["text_bytes"] > 0):
        return "frames.npy does not match the text"
    itemsize = np.dtype(meta["dtype"]).itemsize
    if (int(ends[-1]) if len(ends) else 0) != meta["tokens"] or meta["files"]["tokens.bin"]["bytes"] != meta[
        "tokens"
    ] * itemsize:
        return "token offsets do not match the token count"
    return None
