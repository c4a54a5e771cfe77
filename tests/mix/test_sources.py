import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from domainlm.corpus import CorpusReader
from domainlm.errors import DataError
from domainlm.mix.build import build_mix
from domainlm.mix.encode import BatchEncoder
from domainlm.mix.manifest import open_mix
from domainlm.mix.sources import HeldOut, tokenize_source
from domainlm.tokenizer.load import load_tokenizer
from tests.mix.conftest import GPT2, small_config

WORDS = "The court held that the lease was void because the tenant never signed it. "


@pytest.fixture
def mixed_folder(tmp_path):
    """One source spread over every reader format, with one malformed and one non-UTF-8 line."""
    folder = tmp_path / "legal"
    folder.mkdir()
    (folder / "a.txt").write_text(WORDS * 20)
    lines = [json.dumps({"body": WORDS * 10}), "{not json", json.dumps({"body": WORDS * 12})]
    (folder / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress("\n".join(lines).encode()))
    (folder / "c.jsonl.gz").write_bytes(
        gzip.compress(json.dumps({"body": WORDS * 8}).encode() + b"\n\xff\xfe bad bytes\n")
    )
    pq.write_table(pa.table({"body": [WORDS * 9, WORDS * 11]}), folder / "d.parquet")
    return folder


def _config(small_corpora, folder, out, **fields):
    config = small_config(small_corpora, out, **fields)
    data = config.model_dump()
    data["sources"]["fin"] = {"paths": [str(folder)], "ratio": 0.6, "text_field": "body", "max_repeats": 20}
    return type(config).model_validate(data)


def test_every_format_in_one_source_with_skips_reported(small_corpora, mixed_folder, tmp_path):
    result = build_mix(_config(small_corpora, mixed_folder, tmp_path / "out", val_fraction=0.0), quiet=True)
    source = open_mix(result.out).sources[0]
    manifest = json.loads((result.out / "manifest.json").read_text())
    read = manifest["sources"][0]["read"]
    # 4 files: a.txt is one document (text files have no field), 2 + 1 + 2 from the others.
    assert (read["files"], read["documents"], read["malformed_lines"], read["non_utf8"]) == (4, 6, 1, 1)
    assert source.documents == 6
    encoder = BatchEncoder(load_tokenizer(GPT2))
    texts = [WORDS * n for n in (20, 10, 12, 8, 9, 11)]
    assert source.available_tokens == len(encoder.encode(texts)[0])


def test_strict_fails_on_the_malformed_line_before_any_output(small_corpora, mixed_folder, tmp_path):
    with pytest.raises(DataError, match=r"b\.jsonl\.zst:2: malformed JSON.*run without --strict"):
        build_mix(_config(small_corpora, mixed_folder, tmp_path / "out"), strict=True, quiet=True)
    assert not (tmp_path / "out").exists()


def test_missing_corpus_path_fails_before_work(small_corpora, tmp_path):
    config = small_config(small_corpora, tmp_path / "out")
    data = config.model_dump()
    data["sources"]["gen"]["paths"] = [str(tmp_path / "nope.jsonl")]
    with pytest.raises(DataError, match="nope.jsonl: no such file or directory"):
        build_mix(type(config).model_validate(data), quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_held_out_is_an_even_seeded_systematic_sample():
    held = HeldOut(0.1, seed=0, source="x")
    picks = [i for i in range(1000) if held(i)]
    assert len(picks) == 100
    assert all(9 <= b - a <= 11 for a, b in zip(picks, picks[1:], strict=False))
    other = [i for i in range(1000) if HeldOut(0.1, seed=1, source="x")(i)]
    assert other != picks
    assert not any(HeldOut(0.0, seed=0, source="x")(i) for i in range(100))


def test_count_only_mode_matches_written_counts(small_corpora, tmp_path):
    encoder = BatchEncoder(load_tokenizer(GPT2))
    reader = CorpusReader(small_corpora / "fin.jsonl", source="fin")
    counted = tokenize_source("fin", reader, encoder, 0.2, 0, None)
    written = tokenize_source("fin", reader, encoder, 0.2, 0, tmp_path)
    assert (counted.tokens, counted.val_tokens, counted.documents) == (written.tokens, written.val_tokens, 16)
    assert written.train_path.stat().st_size == 2 * written.tokens
    assert counted.train_path is None
    assert written.train_path == tmp_path / ".work" / "fin.train.bin"
    assert written.val_text_path.is_file()
