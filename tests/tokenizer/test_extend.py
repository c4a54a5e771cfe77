from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from domainlm.errors import ConfigError, DataError
from domainlm.tokenizer.extend import extend_tokenizer
from domainlm.tokenizer.resolve import resolve_tokenizer

from .conftest import write_jsonl


@pytest.fixture(scope="module")
def extended(bpe_dir: Path, corpora_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ext") / "extended"
    manifest = extend_tokenizer(bpe_dir, [("legal", corpora_dir / "legal.jsonl")], 25, out)
    return out, manifest


def test_adds_exactly_the_new_tokens_with_contiguous_ids(extended: tuple[Path, dict], bpe_dir: Path) -> None:
    out, manifest = extended
    mapping = json.loads((out / "added_tokens_map.json").read_text())
    base = Tokenizer.from_file(str(bpe_dir / "tokenizer.json"))
    assert mapping["base_vocab_size"] == 600 and manifest["num_tokens_added"] == 25
    assert [t["id"] for t in mapping["tokens"]] == list(range(600, 625))
    new = AutoTokenizer.from_pretrained(str(out))
    assert len(new) == 625 and new.eos_token_id == 2
    base_vocab = base.get_vocab()
    for entry in mapping["tokens"]:
        assert entry["token"] not in base_vocab
        assert new.convert_ids_to_tokens(entry["id"]) == entry["token"]
        # The map is right: the base pieces spell the token, and base_ids are those pieces.
        assert len(entry["base_ids"]) >= 2
        assert entry["base_pieces"] == [base.id_to_token(i) for i in entry["base_ids"]]
        assert "".join(entry["base_pieces"]) == entry["token"]
        assert base.decode(entry["base_ids"]) == entry["text"] == new.decode([entry["id"]])
    savings = [t["frequency"] for t in mapping["tokens"]]
    assert savings[0] == max(savings)


def test_new_tokens_are_used_and_shorten_the_corpus_exactly_as_predicted(extended: tuple[Path, dict]) -> None:
    out, manifest = extended
    assert manifest["tokens_after"] == manifest["tokens_before"] - manifest["predicted_tokens_saved"]
    assert manifest["token_reduction"] > 0.02
    mapping = json.loads((out / "added_tokens_map.json").read_text())
    new = AutoTokenizer.from_pretrained(str(out))
    top = mapping["tokens"][0]
    ids = new.encode(f"In this text{top['text']} appears.", add_special_tokens=False)
    assert top["id"] in ids
    for text in ["Licensee & Licensor: 1,234 units.", "naïve café 日本 🚀\n\n\t end  "]:
        assert new.decode(new.encode(text, add_special_tokens=False)) == text


def test_map_validates_against_the_pretraining_reader(extended: tuple[Path, dict]) -> None:
    from domainlm.pretrain.vocab_init import load_added_tokens_map

    mapping = load_added_tokens_map(extended[0] / "added_tokens_map.json")
    assert mapping.vocab_size == 625


def test_extend_is_deterministic(bpe_dir: Path, corpora_dir: Path, tmp_path: Path) -> None:
    corpus = [("legal", corpora_dir / "legal.jsonl")]
    extend_tokenizer(bpe_dir, corpus, 10, tmp_path / "a")
    extend_tokenizer(bpe_dir, corpus, 10, tmp_path / "b")
    for name in ("tokenizer.json", "added_tokens_map.json", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_extend_rejects_bad_input(bpe_dir: Path, corpora_dir: Path, tmp_path: Path) -> None:
    corpus = [("legal", corpora_dir / "legal.jsonl")]
    with pytest.raises(
        ConfigError, match=r"extend needs a BPE \(GPT-2, Llama-3 style\) or Unigram .* got WordPiece"
    ):
        extend_tokenizer(resolve_tokenizer("bert-base-uncased")[1], corpus, 5, tmp_path / "x")
    with pytest.raises(ConfigError, match="--num-tokens 0"):
        extend_tokenizer(bpe_dir, corpus, 0, tmp_path / "x")
    with pytest.raises(DataError, match="nope.jsonl: no such file"):
        extend_tokenizer(bpe_dir, [("n", tmp_path / "nope.jsonl")], 5, tmp_path / "x")
    rare = write_jsonl(tmp_path / "rare.jsonl", ["zq"])
    with pytest.raises(ConfigError, match="occurs 2\\+ times"):
        extend_tokenizer(bpe_dir, [("r", rare)], 5, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_pad_to_multiple_of_is_recorded_and_the_tokenizer_unchanged(
    extended: tuple[Path, dict], bpe_dir: Path, corpora_dir: Path, tmp_path: Path
) -> None:
    """`tokenizer extend --pad-to-multiple-of 128`: the map records 128, pretraining builds 640 rows
    (625 tokens rounded up), and the tokenizer is byte-identical to the one written without padding."""
    import typer
    from typer.testing import CliRunner

    from domainlm.cli.tokenizer import register
    from domainlm.pretrain.config import load_recipe
    from domainlm.pretrain.vocab_init import load_added_tokens_map, rows_multiple

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    args = ["tokenizer", "extend", "--base", str(bpe_dir), "--corpus", f"legal={corpora_dir / 'legal.jsonl'}",
            "--num-tokens", "25", "--out", str(tmp_path / "padded"), "--pad-to-multiple-of", "128"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "625 embedding rows" not in result.output and "640 embedding rows" in result.output
    padded, plain = tmp_path / "padded", extended[0]
    assert (padded / "tokenizer.json").read_bytes() == (plain / "tokenizer.json").read_bytes()
    manifest = json.loads((padded / "manifest.json").read_text())
    assert manifest["vocab_size"] == 625 and manifest["embedding_rows"] == 640
    assert extended[1]["embedding_rows"] == 625  # without the flag: one row per token
    mapping = load_added_tokens_map(padded / "added_tokens_map.json")
    assert mapping.pad_to_multiple_of == 128 and mapping.vocab_size == 625
    assert rows_multiple(load_recipe("tiny_cpu").model, mapping) == 128
    with pytest.raises(ConfigError, match=r"--pad-to-multiple-of 0: must be >= 1 \(e.g. 128 for tensor-core"):
        extend_tokenizer(
            bpe_dir, [("legal", corpora_dir / "legal.jsonl")], 5, tmp_path / "x", pad_to_multiple_of=0
        )
    assert not (tmp_path / "x").exists()
