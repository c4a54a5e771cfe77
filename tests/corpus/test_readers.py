import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from datasets import Dataset

from domainlm.assets import sample_corpus
from domainlm.corpus import CorpusReader
from domainlm.corpus.readers import name_apart
from domainlm.errors import DataError

RECORDS = [{"text": "first doc"}, {"text": "second doc"}, {"text": "third doc"}]


def _jsonl_bytes(records):
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _texts(reader):
    return [d.text for d in reader]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst"])
def test_jsonl_plain_and_compressed(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    data = _jsonl_bytes(RECORDS)
    if suffix.endswith(".gz"):
        data = gzip.compress(data)
    elif suffix.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    reader = CorpusReader(path, source="x")
    assert _texts(reader) == ["first doc", "second doc", "third doc"]
    assert reader.stats.num_documents == 3
    assert reader.stats.num_bytes == len("first docsecond docthird doc")


def test_text_files_folder_and_glob(tmp_path):
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "a.txt").write_text("ay")
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    assert _texts(CorpusReader(tmp_path)) == ["ay", "bee"]
    assert _texts(CorpusReader(str(tmp_path / "*.txt"))) == ["ay", "bee"]


def test_parquet_and_custom_field(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"body": ["one", "two"], "id": [1, 2]}), path)
    reader = CorpusReader(path, text_field="body")
    docs = list(reader)
    assert [d.text for d in docs] == ["one", "two"]
    assert docs[1].doc_id.endswith("#2")


def test_saved_dataset_directory(tmp_path):
    Dataset.from_dict({"text": ["alpha", "beta"]}).save_to_disk(str(tmp_path / "ds"))
    assert _texts(CorpusReader(tmp_path / "ds")) == ["alpha", "beta"]


def test_malformed_non_utf8_and_empty_are_counted(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "good"}\n{not json\n{"text": "caf\xe9"}\n{"other": 1}\n{"text": "  "}\n')
    (tmp_path / "empty.jsonl").write_bytes(b"")
    reader = CorpusReader([path, tmp_path / "empty.jsonl"])
    assert _texts(reader) == ["good"]
    s = reader.stats
    assert (s.num_malformed, s.num_non_utf8, s.num_empty_documents, s.num_empty_files) == (2, 1, 1, 1)
    assert any("bad.jsonl:2" in p for p in s.problems)


def test_strict_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "good"}\n{not json\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: malformed JSON"):
        list(CorpusReader(path, strict=True))


def test_missing_path_and_unsupported_type(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        CorpusReader(tmp_path / "nope.jsonl")
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(DataError, match="unsupported file type"):
        CorpusReader(tmp_path / "x.csv")


def test_shipped_sample_reads_with_counts():
    reader = CorpusReader(sample_corpus("finance"), source="finance")
    docs = list(reader)
    assert len(docs) == 38 and reader.stats.num_skipped == 0
    assert all(d.source == "finance" for d in docs)


def _gz_lines(num: int) -> bytes:
    return gzip.compress(_jsonl_bytes([{"text": f"document {i} " * 20} for i in range(num)]))


@pytest.mark.parametrize("strict", [False, True])
def test_truncated_gz_names_the_file_and_the_last_line_read(tmp_path, strict):
    data = _gz_lines(400)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    reader = CorpusReader(path, strict=strict)
    seen = []
    # Even without --strict: skipping the rest of a damaged file would silently train on part of it.
    with pytest.raises(
        DataError, match=r"cut\.jsonl\.gz: truncated or corrupt compressed file \(after line (\d+): "
    ) as err:
        seen.extend(reader)
    last_line = int(str(err.value).split("after line ")[1].split(":")[0])
    assert 0 < last_line < 400 and len(seen) == last_line
    assert "gzip -t" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("plain.jsonl.gz", b'{"text": "not compressed"}\n', r"plain\.jsonl\.gz: .*before the first line: Not a gzipped file"),
        ("bad.jsonl.zst", b"\x28\xb5\x2f\xfd" + b"\x00garbage" * 8, r"bad\.jsonl\.zst: truncated or corrupt .*zstd -t"),
    ],
)  # fmt: skip
def test_corrupt_compressed_files(tmp_path, name, data, match):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError, match=match):
        list(CorpusReader(path))


def test_corrupt_body_of_a_gz(tmp_path):
    data = bytearray(_gz_lines(50))
    for i in range(12, len(data) - 8):
        data[i] ^= 0xA5
    path = tmp_path / "flipped.jsonl.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"flipped\.jsonl\.gz: truncated or corrupt compressed file"):
        list(CorpusReader(path))


def test_corrupt_parquet(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(300)]}), good)
    data = good.read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    for i in range(4, 120):
        flipped[i] ^= 0x5A
    (tmp_path / "flipped.parquet").write_bytes(bytes(flipped))
    (tmp_path / "text.parquet").write_bytes(b"not parquet at all")
    for name in ("cut", "flipped", "text"):
        with pytest.raises(
            DataError, match=rf"{name}\.parquet: corrupt or not a Parquet file \(before the first row: "
        ) as err:
            list(CorpusReader(tmp_path / f"{name}.parquet"))
        assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=r"no column 'body' \(columns: text\); set text_field"):
        list(CorpusReader(good, text_field="body"))


def _one_line(path, text="doc"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_jsonl_bytes([{"text": f"{text} one"}, {"text": "  "}, {"text": f"{text} three"}]))
    return path


def test_ids_name_files_relative_to_the_path_given(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    _one_line(corpus / "a.jsonl")
    _one_line(corpus / "sub" / "b.jsonl")
    (corpus / "sub" / "c.txt").write_text("a text file")
    pq.write_table(pa.table({"text": ["r1", "r2"]}), corpus / "d.parquet")
    Dataset.from_dict({"text": ["alpha"]}).save_to_disk(str(tmp_path / "ds"))
    folder = [
        "a.jsonl:1",
        "a.jsonl:3",
        "d.parquet#1",
        "d.parquet#2",
        "sub/b.jsonl:1",
        "sub/b.jsonl:3",
        "sub/c.txt",
    ]
    assert [d.doc_id for d in CorpusReader(corpus)] == folder
    assert [d.doc_id for d in CorpusReader(f"file://{corpus}/")] == folder
    assert [d.doc_id for d in CorpusReader(corpus / "sub" / "b.jsonl")] == ["b.jsonl:1", "b.jsonl:3"]
    assert [d.doc_id for d in CorpusReader(str(corpus / "s*" / "*.jsonl"))] == [
        "sub/b.jsonl:1",
        "sub/b.jsonl:3",
    ]
    assert [d.doc_id for d in CorpusReader(tmp_path / "ds")] == ["ds#1"]
    monkeypatch.chdir(tmp_path)  # a relative glob: named below its folder without a wildcard
    assert [d.doc_id for d in CorpusReader("corpus/**/*.jsonl")] == [
        "a.jsonl:1", "a.jsonl:3", "sub/b.jsonl:1", "sub/b.jsonl:3"
    ]  # fmt: skip
    # what is shown to the user about a problem keeps the full path: it is for finding the file
    reader = CorpusReader(corpus)
    list(reader)
    assert reader.stats.problems == [
        f"{corpus / 'a.jsonl'}:2: empty document",
        f"{corpus / 'sub' / 'b.jsonl'}:2: empty document",
    ]
    with pytest.raises(DataError, match=f"^{corpus / 'a.jsonl'}:2: empty document"):
        list(CorpusReader(corpus, strict=True))


def test_files_that_would_share_a_name_are_named_from_their_common_folder(tmp_path):
    for folder in ("x/a", "x/b", "y/a"):
        _one_line(tmp_path / folder / "data.jsonl")
    _one_line(tmp_path / "x" / "data.jsonl")
    files = [tmp_path / f / "data.jsonl" for f in ("x/a", "x/b", "x")]
    assert CorpusReader(files).names == ["a/data.jsonl", "b/data.jsonl", "data.jsonl"]
    # a clash is resolved from the folder the clashing files share, whatever lies above it
    assert CorpusReader([tmp_path / "x", tmp_path / "y"]).names == [
        "x/a/data.jsonl", "b/data.jsonl", "data.jsonl", "y/a/data.jsonl"
    ]  # fmt: skip
    reader = CorpusReader([tmp_path / "x/a/data.jsonl", tmp_path / "y/a/data.jsonl"])
    assert reader.names == ["x/a/data.jsonl", "y/a/data.jsonl"]
    # one file of a reader keeps its name when read alone (how mix and workers read file by file)
    alone = reader.for_file(reader.files[1])
    assert alone.files == [tmp_path / "y/a/data.jsonl"] and [d.doc_id for d in alone] == [
        "y/a/data.jsonl:1",
        "y/a/data.jsonl:3",
    ]
    # across corpora (curate's sources, decontamination references): named apart the same way
    readers = [
        CorpusReader(tmp_path / "x/a/data.jsonl"),
        CorpusReader(tmp_path / "y/a"),
        CorpusReader(tmp_path / "x/b"),
    ]
    assert [r.names for r in readers] == [["data.jsonl"], ["data.jsonl"], ["data.jsonl"]]
    name_apart(readers)
    assert [r.names for r in readers] == [["x/a/data.jsonl"], ["y/a/data.jsonl"], ["x/b/data.jsonl"]]
    assert next(iter(readers[1])).doc_id == "y/a/data.jsonl:1"
