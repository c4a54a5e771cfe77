"""Corpus files -> a stream of Documents, with counts of every line that could not be read.

Formats, chosen by file name:
- `*.txt`, `*.text`, `*.md`: one document per file (undecodable bytes become U+FFFD and are counted);
- `*.jsonl`, `*.ndjson`, `*.json` (JSON Lines), optionally `.gz` or `.zst` compressed: one document
  per line, text in `text_field`;
- `*.parquet`: one document per row, text in column `text_field`, read in record batches;
- a directory written by `datasets.Dataset.save_to_disk` (every split, in name order);
- any other directory: every supported file below it, in sorted path order; a glob likewise.
Everything streams: memory is bounded by one line / one record batch, never the corpus.
A path may be a URL (`s3://bucket/corpus/`, `gs://`, `memory://`; domainlm.storage): files, folders
and globs in object storage are listed there and streamed (ranged reads, no local copy); a saved
`datasets` folder must be local.
A document's id names its file relative to the path given (domainlm.corpus.file_names) and where in
it: `x.jsonl.gz:12` (line), `data.parquet#7` (row), `sub/a.txt`, `ds[train]#3`, so the same corpus
in another folder or a bucket gives the same ids; problems and errors name the full path or URL.
A malformed line, a non-UTF-8 line, a missing text field or an empty file is counted in
`ReadStats` and skipped; with `strict=True` it is a DataError naming the file and line.
A damaged file (truncated or corrupt `.gz`/`.zst`, a Parquet file that cannot be decoded) is always
a DataError naming the file and the last line/row read: skipping the rest of a file silently would
train on part of a corpus without anyone noticing.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from domainlm.corpus.file_names import file_names, spec_base
from domainlm.errors import DataError
from domainlm.storage import check_reachable, is_url, local_path_of
from domainlm.storage.paths import RemotePath

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
COMPRESSION_SUFFIXES = (".gz", ".zst")
PARQUET_SUFFIXES = (".parquet",)
_MAX_PROBLEMS_KEPT = 20
_PARQUET_BATCH_ROWS = 1024


@dataclass(frozen=True)
class Document:
    """One document: its text, the source (corpus) name, and an id that traces it to file and line
    (the file named relative to the corpus path given: `sub/x.jsonl.gz:12`)."""

    text: str
    source: str
    doc_id: str


@dataclass
class ReadStats:
    """What a read saw; `problems` keeps the first few messages for the report."""

    num_files: int = 0
    num_documents: int = 0
    num_bytes: int = 0
    num_malformed: int = 0
    num_non_utf8: int = 0
    num_empty_files: int = 0
    num_empty_documents: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return self.num_malformed + self.num_non_utf8 + self.num_empty_documents

    def as_dict(self) -> dict:
        return {
            "files": self.num_files,
            "documents": self.num_documents,
            "bytes": self.num_bytes,
            "malformed_lines": self.num_malformed,
            "non_utf8": self.num_non_utf8,
            "empty_files": self.num_empty_files,
            "empty_documents": self.num_empty_documents,
            "problems": list(self.problems),
        }


def _is_dataset_dir(path: Path | RemotePath) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _kind_of(path: Path | RemotePath) -> str | None:
    """'text', 'jsonl', 'parquet' or None (unsupported) from the file name."""
    name = path.name.lower()
    for comp in COMPRESSION_SUFFIXES:
        if name.endswith(comp):
            name = name[: -len(comp)]
            return "jsonl" if name.endswith(JSONL_SUFFIXES) else None
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _expand_one(spec: str | Path) -> list[Path]:
    if is_url(str(spec)):
        return _expand_url(str(spec))
    path = Path(spec).expanduser()
    if any(ch in str(spec) for ch in "*?["):
        return sorted(p for match in glob.glob(str(path), recursive=True) for p in _expand_one(match))
    if path.is_dir():
        if _is_dataset_dir(path):
            return [path]
        return sorted(p for p in path.rglob("*") if p.is_file() and _kind_of(p) is not None)
    if path.is_file():
        _check_kind(path)
        return [path]
    raise DataError(f"{spec}: no such file or directory; check the corpus path")


def _check_kind(path: Path | RemotePath) -> None:
    if _kind_of(path) is None:
        raise DataError(
            f"{path}: unsupported file type; use .txt, .jsonl/.json (optionally .gz/.zst), "
            ".parquet, or a `datasets` save_to_disk directory"
        )


def _expand_url(spec: str) -> list[RemotePath]:
    """A file, folder or glob in object storage -> its corpus files (streamed when read, never copied)."""
    local = local_path_of(spec)
    if local is not None:
        return _expand_one(local)
    check_reachable(spec)  # a missing bucket, endpoint or credentials: one line, before any listing
    path = RemotePath(spec)
    if any(ch in spec.split("://", 1)[1] for ch in "*?["):
        matches = path.glob()
        return sorted(p for match in matches for p in (_expand_url(match.url) if match.is_dir() else [match]))
    if path.is_file():
        _check_kind(path)
        return [path]
    if path.is_dir():
        if _is_dataset_dir(path):
            raise DataError(
                f"{spec}: a saved `datasets` folder in object storage is not read in place; copy it to "
                "local disk first (e.g. `aws s3 sync`) or export it as .parquet / .jsonl.gz files"
            )
        return [p for p in path.rglob("*") if _kind_of(p) is not None]
    raise DataError(f"{spec}: no such file or folder in the bucket; check the corpus URL")


def expand_named(specs: list[str | Path]) -> tuple[list[Path], list[tuple[str, ...]]]:
    """Files (and dataset dirs) named by paths, folders and globs, in a deterministic order, and
    the folder each is named from in document ids (that of the spec that listed it first)."""
    files: list[Path] = []
    bases: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for spec in specs:
        found = _expand_one(spec)
        if not found:
            raise DataError(f"{spec}: matches no corpus files (.txt, .jsonl[.gz|.zst], .parquet)")
        base = spec_base(spec, found)
        for path in found:
            if str(path) not in seen:
                seen.add(str(path))
                files.append(path)
                bases.append(base)
    return files, bases


def expand_paths(specs: list[str | Path]) -> list[Path]:
    """Files (and dataset dirs) named by paths, folders and globs, in a deterministic order."""
    return expand_named(specs)[0]


def name_apart(readers: list[CorpusReader]) -> None:
    """Name the files of several readers as one reader would (where two readers' files would get
    one name, from the folder they share): ids that say which file across corpora, e.g. in a
    removal log's `duplicate_of`. A file listed by two readers keeps its first reader's name."""
    unique: dict[str, tuple[Path, tuple[str, ...]]] = {}
    for reader in readers:
        for path, base in zip(reader.files, reader._bases, strict=True):
            unique.setdefault(str(path), (path, base))
    files = [path for path, _ in unique.values()]
    named = dict(zip(unique, file_names(files, [base for _, base in unique.values()]), strict=True))
    for reader in readers:
        reader._set_names([named[str(path)] for path in reader.files])


def _decompression_errors() -> tuple[type[BaseException], ...]:
    """What gzip/zstandard raise on a truncated or corrupt stream (EOFError: gzip cut short)."""
    import zstandard

    return (EOFError, OSError, zlib.error, zstandard.ZstdError)


def _damaged_file(path: Path, where: str, exc: BaseException) -> DataError:
    detail = " ".join(str(exc).split()) or type(exc).__name__  # pyarrow's messages span lines
    name = path.name.lower()
    if name.endswith(COMPRESSION_SUFFIXES):
        check = "zstd -t" if name.endswith(".zst") else "gzip -t"
        fix = f"`{check} {path}` checks it; re-download or re-compress it, or remove it from the corpus"
        what = "truncated or corrupt compressed file"
    elif name.endswith(PARQUET_SUFFIXES):
        fix = "re-export it (pyarrow.parquet.write_table), or remove it from the corpus"
        what = "corrupt or not a Parquet file"
    else:
        fix = "check that it is readable, or remove it from the corpus"
        what = "cannot be read"
    return DataError(f"{path}: {what} ({where}: {detail}); {fix}")


def _open_raw(path: Path | RemotePath) -> io.BufferedIOBase:
    """The file's bytes: a local file, or a stream from object storage (ranged reads, not a copy)."""
    return open(path, "rb") if isinstance(path, Path) else path.open("rb")  # noqa: SIM115 - caller closes


def _decompressed(path: Path | RemotePath, raw: io.BufferedIOBase) -> io.BufferedIOBase:
    """`raw` decompressed by the file's suffix; closing the result leaves `raw` to its owner."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if name.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=False))
    return raw


class CorpusReader:
    """Iterate the documents of one corpus (any mix of supported files), counting what is skipped.

    Iterating again re-reads the files and resets `stats`. `names`: the name each file gets in
    document ids, for a reader over files another reader listed (`for_file`, or a worker given
    one file and its name); by default each is named relative to the path that listed it.
    """

    def __init__(
        self,
        paths: list[str | Path] | str | Path,
        source: str | None = None,
        text_field: str = "text",
        strict: bool = False,
        names: list[str] | None = None,
    ) -> None:
        specs = [paths] if isinstance(paths, str | Path) else list(paths)
        if not specs:
            raise DataError(
                f"corpus {source or ''!r}: no paths given; name at least one file, folder or glob"
            )
        self.files, self._bases = expand_named(specs)
        if names is not None and len(names) != len(self.files):
            raise ValueError(f"{len(names)} names for {len(self.files)} files")
        self._set_names(list(names) if names is not None else file_names(self.files, self._bases))
        self.source = source or Path(specs[0]).name.split(".")[0]
        self.text_field = text_field
        self.strict = strict
        self.stats = ReadStats()

    def _set_names(self, names: list[str]) -> None:
        self.names = names
        self._name_by_file = dict(zip(self.files, names, strict=True))

    def name_of(self, path: Path) -> str:
        """The name `path` (one of `files`) has in this reader's document ids."""
        return self._name_by_file[path]

    def for_file(self, path: Path) -> CorpusReader:
        """A reader over one of this reader's files, its documents carrying the same ids."""
        return CorpusReader([path], self.source, self.text_field, self.strict, names=[self.name_of(path)])

    def __iter__(self) -> Iterator[Document]:
        self.stats = ReadStats()
        for path, name in zip(self.files, self.names, strict=True):
            self.stats.num_files += 1
            yield from self._read_file(path, name)

    def _problem(self, counter: str, where: str, message: str) -> None:
        if self.strict:
            raise DataError(f"{where}: {message}; fix the input or run without --strict to skip and count it")
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        if len(self.stats.problems) < _MAX_PROBLEMS_KEPT:
            self.stats.problems.append(f"{where}: {message}")

    def _emit(self, text: str, doc_id: str, where: str) -> Iterator[Document]:
        """A document with id `doc_id` (what outputs carry); `where`: its full path, for problems."""
        if not text.strip():
            self._problem("num_empty_documents", where, "empty document")
            return
        self.stats.num_documents += 1
        self.stats.num_bytes += len(text.encode("utf-8"))
        yield Document(text=text, source=self.source, doc_id=doc_id)

    def _read_file(self, path: Path, name: str) -> Iterator[Document]:
        if isinstance(path, Path) and path.is_dir():
            yield from self._read_dataset(path, name)
            return
        if path.stat().st_size == 0:
            self._problem("num_empty_files", str(path), "empty file")
            return
        kind = _kind_of(path)
        if kind == "text":
            yield from self._read_text(path, name)
        elif kind == "jsonl":
            yield from self._read_jsonl(path, name)
        else:
            yield from self._read_parquet(path, name)

    def _read_text(self, path: Path, name: str) -> Iterator[Document]:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._problem("num_non_utf8", f"{path} byte {exc.start}", "not valid UTF-8 (bytes replaced)")
            text = raw.decode("utf-8", errors="replace")
        yield from self._emit(text, name, str(path))

    @staticmethod
    def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
        """(line number, raw line); a stream that cannot be decompressed is a DataError naming
        the last line that could."""
        line_no = 0
        errors = _decompression_errors()
        try:
            with _open_raw(path) as raw, _decompressed(path, raw) as handle:
                for raw in handle:
                    line_no += 1
                    yield line_no, raw
        except errors as exc:
            where = f"after line {line_no}" if line_no else "before the first line"
            raise _damaged_file(path, where, exc) from exc

    def _read_jsonl(self, path: Path, name: str) -> Iterator[Document]:
        num_lines = 0
        for line_no, raw in self._lines(path):
            num_lines += 1
            where = f"{path}:{line_no}"
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                self._problem("num_non_utf8", where, "line is not valid UTF-8")
                continue
            text = self._text_of_json_line(line, where)
            if text is not None:
                yield from self._emit(text, f"{name}:{line_no}", where)
        if num_lines == 0:
            self._problem("num_empty_files", str(path), "empty file (nothing after decompression)")

    def _text_of_json_line(self, line: str, where: str) -> str | None:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            self._problem("num_malformed", where, f"malformed JSON ({exc.msg})")
            return None
        text = record.get(self.text_field) if isinstance(record, dict) else None
        if not isinstance(text, str):
            self._problem("num_malformed", where, f"no string field {self.text_field!r}; set text_field")
            return None
        return text

    def _parquet_texts(self, path: Path) -> Iterator[tuple[int, object]]:
        """(row number, value of the text column); a file pyarrow cannot decode is a DataError
        naming the last row read."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        row = 0
        try:
            with contextlib.ExitStack() as stack:
                source = path if isinstance(path, Path) else stack.enter_context(path.open("rb"))
                parquet = pq.ParquetFile(source)
                names = parquet.schema_arrow.names
                if self.text_field not in names:
                    raise DataError(
                        f"{path}: no column {self.text_field!r} (columns: {', '.join(names)}); set text_field"
                    )
                for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[self.text_field]):
                    for value in batch.column(0).to_pylist():
                        row += 1
                        yield row, value
        except (pa.ArrowException, OSError) as exc:
            raise _damaged_file(path, f"after row {row}" if row else "before the first row", exc) from exc

    def _read_parquet(self, path: Path, name: str) -> Iterator[Document]:
        row = 0
        for row, text in self._parquet_texts(path):
            if not isinstance(text, str):
                self._problem("num_malformed", f"{path} row {row}", f"{self.text_field!r} is not a string")
                continue
            yield from self._emit(text, f"{name}#{row}", f"{path}#{row}")
        if row == 0:
            self._problem("num_empty_files", str(path), "empty file (no rows)")

    def _read_dataset(self, path: Path, name: str) -> Iterator[Document]:
        from datasets import Dataset, load_from_disk

        loaded = load_from_disk(str(path))
        splits = [("", loaded)] if isinstance(loaded, Dataset) else sorted(loaded.items())
        for split_name, split in splits:
            if self.text_field not in split.column_names:
                raise DataError(
                    f"{path}: dataset has no column {self.text_field!r} "
                    f"(columns: {', '.join(split.column_names)}); set text_field"
                )
            label = f"{path}[{split_name}]" if split_name else str(path)
            id_label = f"{name}[{split_name}]" if split_name else name
            column = split.select_columns([self.text_field])
            for index, record in enumerate(column):
                text = record[self.text_field]
                if not isinstance(text, str):
                    self._problem("num_malformed", f"{label} row {index + 1}", "text is not a string")
                    continue
                yield from self._emit(text, f"{id_label}#{index + 1}", f"{label}#{index + 1}")
