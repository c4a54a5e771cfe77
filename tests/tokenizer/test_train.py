from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from domainlm.errors import ConfigError, DataError
from domainlm.tokenizer.train import train_tokenizer

from .conftest import small_config, write_jsonl

ROUND_TRIP = [
    "Section 12(b)(3): the Licensee shall pay $1,234,567.89 by 2024-03-31.",
    "Unicode: naïve café, Straße, 日本語, emoji 🚀, ∑ x² — “quoted”.",
    "  leading spaces,\ttabs,\n\nblank lines\r\n and trailing spaces   ",
    "",
]


@pytest.mark.parametrize("fixture", ["bpe_dir", "unigram_dir"])
def test_trained_tokenizer_loads_through_autotokenizer_and_round_trips(fixture: str, request) -> None:
    folder: Path = request.getfixturevalue(fixture)
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert len(tok) == 600
    for text in ROUND_TRIP:
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text
    # Digits are split one per token, so a number never becomes a single token.
    pieces = tok.convert_ids_to_tokens(tok.encode(" 2024", add_special_tokens=False))
    assert [sum(ch.isdigit() for ch in p) for p in pieces if any(ch.isdigit() for ch in p)] == [1, 1, 1, 1]


def test_special_tokens_have_the_first_ids_in_documented_order(bpe_dir: Path, unigram_dir: Path) -> None:
    bpe = AutoTokenizer.from_pretrained(str(bpe_dir))
    assert (bpe.unk_token_id, bpe.bos_token_id, bpe.eos_token_id, bpe.pad_token_id) == (0, 1, 2, 3)
    assert bpe.eos_token == "</s>" and bpe.mask_token is None
    uni = AutoTokenizer.from_pretrained(str(unigram_dir))
    assert (uni.unk_token_id, uni.bos_token_id, uni.eos_token_id, uni.pad_token_id, uni.mask_token_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    sentinels = ["<extra_id_0>", "<extra_id_1>", "<extra_id_2>"]
    assert uni.convert_tokens_to_ids(sentinels) == [5, 6, 7]
    assert uni.extra_special_tokens == sentinels
    # Special tokens are atomic in text and skipped on request.
    for tok in (bpe, uni):
        ids = tok.encode("a <pad> b </s>", add_special_tokens=False)
        assert ids.count(3) == 1 and ids[-1] == 2
    assert bpe.decode(bpe.encode("a <pad> b", add_special_tokens=False), skip_special_tokens=True) == "a  b"


def test_manifest_describes_inputs_and_eos(bpe_dir: Path, corpora_dir: Path) -> None:
    manifest = json.loads((bpe_dir / "manifest.json").read_text())
    assert manifest["format"] == "domainlm.tokenizer/v1"
    assert manifest["eos_token_id"] == 2 and manifest["vocab_size"] == 600
    (corpus,) = manifest["corpora"]
    size = (corpora_dir / "legal.jsonl").stat().st_size
    assert corpus["documents"] == 40 and corpus["used_documents"] == 40
    assert 0.9 * size < corpus["used_bytes"] == corpus["bytes"] < size  # text bytes, without JSON syntax
    assert len(corpus["fingerprint"]) == 64
    run = json.loads((bpe_dir / "run.json").read_text())
    assert run["train_seconds"] > 0 and run["train_bytes"] == corpus["used_bytes"]


@pytest.mark.parametrize("model", ["bpe", "unigram"])
def test_training_twice_gives_byte_identical_files(model: str, corpora_dir: Path, tmp_path: Path) -> None:
    config = small_config(corpora_dir, model=model, vocab_size=400)
    train_tokenizer(config, tmp_path / "a")
    train_tokenizer(config, tmp_path / "b")
    for name in ("tokenizer.json", "tokenizer_config.json", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_ratios_take_byte_shares_exactly_without_repeating(tmp_path: Path) -> None:
    # a: 10 docs x 100 bytes = 1000 bytes; b: 10 docs x 300 bytes = 3000 bytes.
    a = write_jsonl(tmp_path / "a.jsonl", [f"{i} " + "a" * 98 for i in range(10)])
    b = write_jsonl(tmp_path / "b.jsonl", [f"{i} " + "b" * 298 for i in range(10)])
    config = small_config(
        tmp_path, vocab_size=300, min_frequency=1,
        corpora=[{"name": "a", "paths": [str(a)], "ratio": 0.5}, {"name": "b", "paths": [str(b)], "ratio": 0.5}],
    )  # fmt: skip
    manifest = train_tokenizer(config, tmp_path / "out")
    used = {c["name"]: (c["used_bytes"], c["bytes"], c["realized_ratio"]) for c in manifest["corpora"]}
    # total = min(1000 / 0.5, 3000 / 0.5) = 2000 bytes: all of a, 1000 bytes of b (3 docs + 100 cut).
    assert used == {"a": (1000, 1000, 0.5), "b": (1000, 3000, 0.5)}
    b_entry = manifest["corpora"][1]
    assert b_entry["used_documents"] == 4 and b_entry["sampled"]


def test_max_train_bytes_repeats_a_thin_corpus(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [f"{i} " + "a" * 98 for i in range(10)])
    b = write_jsonl(tmp_path / "b.jsonl", [f"{i} " + "b" * 298 for i in range(10)])
    config = small_config(
        tmp_path, vocab_size=300, max_train_bytes="3000",
        corpora=[{"name": "a", "paths": [str(a)], "ratio": 0.6}, {"name": "b", "paths": [str(b)], "ratio": 0.4}],
    )  # fmt: skip
    manifest = train_tokenizer(config, tmp_path / "out")
    a_entry, b_entry = manifest["corpora"]
    assert (a_entry["used_bytes"], a_entry["repeats"]) == (1800, 1.8)
    assert (b_entry["used_bytes"], b_entry["repeats"]) == (1200, 0.4)


def test_vocab_smaller_than_alphabet_plus_specials_is_rejected(corpora_dir: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size 259 is smaller than the 256-byte alphabet plus 4"):
        small_config(corpora_dir, vocab_size=259)


def test_ratio_rules(corpora_dir: Path) -> None:
    path = str(corpora_dir / "legal.jsonl")
    with pytest.raises(ValueError, match="set a ratio for every corpus or for none"):
        small_config(
            corpora_dir,
            corpora=[{"name": "a", "paths": [path], "ratio": 0.5}, {"name": "b", "paths": [path]}],
        )
    with pytest.raises(ValueError, match="ratios must sum to 1, got 0.9"):
        small_config(corpora_dir, corpora=[{"name": "a", "paths": [path], "ratio": 0.5},
                                           {"name": "b", "paths": [path], "ratio": 0.4}])  # fmt: skip
    with pytest.raises(ValueError, match="corpus names must be unique; repeated: a"):
        small_config(corpora_dir, corpora=[{"name": "a", "paths": [path]}, {"name": "a", "paths": [path]}])


def test_missing_corpus_fails_before_writing(corpora_dir: Path, tmp_path: Path) -> None:
    config = small_config(corpora_dir, corpora=[{"name": "x", "paths": [str(tmp_path / "nope.jsonl")]}])
    with pytest.raises(DataError, match="nope.jsonl: no such file or directory"):
        train_tokenizer(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_corpus_without_text_is_a_data_error(tmp_path: Path, corpora_dir: Path) -> None:
    empty = write_jsonl(tmp_path / "e.jsonl", ["   ", "\n"])
    config = small_config(corpora_dir, corpora=[{"name": "e", "paths": [str(empty)]}])
    with pytest.raises(DataError, match="corpora e: no documents with text"):
        train_tokenizer(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(bpe_dir: Path, corpora_dir: Path) -> None:
    with pytest.raises(ConfigError, match="already exists"):
        train_tokenizer(small_config(corpora_dir), bpe_dir)


def test_unigram_encodes_exactly_like_its_sentencepiece_model(unigram_dir: Path) -> None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(unigram_dir / "sentencepiece.model"))
    tok = AutoTokenizer.from_pretrained(str(unigram_dir))
    for text in [*ROUND_TRIP, "The Licensee shall indemnify the Licensor under Section 4.2(a)."]:
        assert tok.encode(text, add_special_tokens=False) == sp.encode(text)
    assert sp.id_to_piece(0) == "<unk>" and sp.id_to_piece(4) == "<mask>"


def test_unigram_needs_an_unk_token(corpora_dir: Path) -> None:
    with pytest.raises(ValueError, match="the unigram model needs an unk token"):
        small_config(corpora_dir, model="unigram", special_tokens={"unk": None})
