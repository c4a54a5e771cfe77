"""`tokenizer extend` on a Unigram (SentencePiece) base and a Llama-3 style BPE base: other text keeps
the base's ids, domain text gets shorter, the map is what pretraining reads, fast_bpe stays exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from domainlm.pretrain.vocab_init import load_added_tokens_map
from domainlm.tokenizer.extend import extend_tokenizer
from domainlm.tokenizer.extend_unigram import MERGE_BONUS
from domainlm.tokenizer.fast_bpe import TokenizersEncoder, build_encoder

from .conftest import shipped_texts, write_jsonl

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def write_llama3_style(out: Path, texts: list[str], vocab_size: int = 800) -> Path:
    """Llama-3's pipeline: Split(regex, isolated) + ByteLevel(use_regex=False), ignore_merges, specials."""
    tokenizer = Tokenizer(models.BPE(ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>"
    ).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def llama3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [*shipped_texts("general", 30), *shipped_texts("medical", 20), *shipped_texts("legal", 10)]
    return write_llama3_style(tmp_path_factory.mktemp("llama3") / "base", texts)


@pytest.fixture(scope="module")
def extended(
    request: pytest.FixtureRequest, corpora_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, dict]:
    base = request.getfixturevalue(request.param)
    out = tmp_path_factory.mktemp(f"ext-{request.param}") / "extended"
    manifest = extend_tokenizer(base, [("legal", corpora_dir / "legal.jsonl")], 40, out)
    return base, out, manifest


BASES = ["unigram_dir", "llama3_dir"]


def other_domain_lines() -> list[str]:
    docs = [*shipped_texts("general", 60), *shipped_texts("medical", 60), *shipped_texts("finance", 60)]
    return [line for doc in docs for line in doc.split("\n") if line.strip()]


def token_texts(out: Path) -> list[str]:
    """The new tokens as text: what a piece of text must contain for one to be used."""
    return [t["text"] for t in json.loads((out / "added_tokens_map.json").read_text())["tokens"]]


@pytest.mark.parametrize("extended", BASES, indirect=True)
def test_text_without_the_new_tokens_keeps_the_base_ids(extended: tuple[Path, Path, dict]) -> None:
    base_dir, out, _ = extended
    base, new = (
        Tokenizer.from_file(str(base_dir / "tokenizer.json")),
        Tokenizer.from_file(str(out / "tokenizer.json")),
    )
    added = token_texts(out)
    # Unigram: the normalizer puts "▁" before the text; a new piece "▁x" matches " x" at the start.
    clean = [line for line in other_domain_lines() if not any(t in " " + line for t in added)]
    assert len(clean) >= 100
    for line in clean:
        assert (
            new.encode(line, add_special_tokens=False).ids == base.encode(line, add_special_tokens=False).ids
        )


@pytest.mark.parametrize("extended", BASES, indirect=True)
def test_new_tokens_replace_their_base_pieces(extended: tuple[Path, Path, dict]) -> None:
    """On all text, the new ids spelled out as their base pieces give the base's ids (nearly always:
    the extended tokenizer reads text as the base did, which the mean-of-pieces init assumes)."""
    base_dir, out, manifest = extended
    base, new = (
        Tokenizer.from_file(str(base_dir / "tokenizer.json")),
        Tokenizer.from_file(str(out / "tokenizer.json")),
    )
    mapping = load_added_tokens_map(out / "added_tokens_map.json")
    pieces = {t.id: t.base_ids for t in mapping.tokens}
    lines = other_domain_lines()[:3000] + shipped_texts("legal", 60)
    same = used = 0
    for line in lines:
        ids = new.encode(line, add_special_tokens=False).ids
        used += any(i in pieces for i in ids)
        spelled = [p for i in ids for p in pieces.get(i, [i])]
        same += spelled == base.encode(line, add_special_tokens=False).ids
        assert new.decode(ids) == line
    assert used >= 60 and same >= 0.99 * len(lines)


@pytest.mark.parametrize("extended", BASES, indirect=True)
def test_domain_text_gets_shorter_and_the_map_fits_pretraining(extended: tuple[Path, Path, dict]) -> None:
    base_dir, out, manifest = extended
    base = AutoTokenizer.from_pretrained(str(base_dir))
    assert manifest["num_tokens_added"] == 40 and manifest["vocab_size"] == len(base) + 40
    assert manifest["tokens_after"] < manifest["tokens_before"] * 0.95
    assert abs(
        manifest["predicted_tokens_saved"] - (manifest["tokens_before"] - manifest["tokens_after"])
    ) < (0.05 * manifest["predicted_tokens_saved"])
    mapping = load_added_tokens_map(out / "added_tokens_map.json")
    assert mapping.base_vocab_size == len(base) and mapping.vocab_size == manifest["vocab_size"]
    new = AutoTokenizer.from_pretrained(str(out))
    assert new.eos_token == base.eos_token and new.eos_token_id == base.eos_token_id
    for entry in mapping.tokens:
        assert len(entry.base_ids) >= 2 and base.decode(entry.base_ids) == new.decode([entry.id])
        assert new.convert_ids_to_tokens(entry.id) == entry.token


def test_unigram_scores_favour_the_fused_piece_by_the_bonus(
    unigram_dir: Path, tmp_path: Path, corpora_dir: Path
) -> None:
    out = tmp_path / "ext"
    extend_tokenizer(unigram_dir, [("legal", corpora_dir / "legal.jsonl")], 10, out)
    base_vocab = json.loads((unigram_dir / "tokenizer.json").read_text())["model"]["vocab"]
    lowest = min(score for _, score in base_vocab)
    for entry in json.loads((out / "added_tokens_map.json").read_text())["tokens"]:
        expected = sum(base_vocab[i][1] for i in entry["base_ids"]) + MERGE_BONUS * (
            len(entry["base_ids"]) - 1
        )
        assert entry["score"] == pytest.approx(max(expected, lowest), abs=1e-9)
        assert entry["token"] == "".join(entry["base_pieces"]) and "▁" not in entry["token"][1:]


@pytest.mark.parametrize("extended", ["llama3_dir"], indirect=True)
def test_fast_bpe_stays_exact_on_an_extended_tokenizer(extended: tuple[Path, Path, dict]) -> None:
    _, out, _ = extended
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    lines = other_domain_lines()[:300] + shipped_texts("legal", 40)
    encoder = build_encoder(tokenizer, probe_texts=lines[:50])
    want = TokenizersEncoder(tokenizer).encode_batch(lines)
    got = encoder.encode_batch(lines)
    assert all(a.tolist() == b.tolist() for a, b in zip(want, got, strict=True)), encoder.name


def test_cli_summary_names_the_base_and_the_token_counts(
    unigram_dir: Path, corpora_dir: Path, tmp_path: Path
) -> None:
    import typer
    from typer.testing import CliRunner

    from domainlm.cli import tokenizer as tokenizer_cli

    app = typer.Typer()
    app.callback()(lambda: None)
    tokenizer_cli.register(app)
    out = tmp_path / "ext"
    args = ["tokenizer", "extend", "--base", str(unigram_dir), "--corpus", f"legal={corpora_dir / 'legal.jsonl'}",
            "--num-tokens", "5", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["base_model"] == "Unigram" and manifest["num_tokens_added"] == 5
    line = (
        f"domain corpus (Unigram base): {manifest['tokens_before']:,} -> {manifest['tokens_after']:,} tokens"
    )
    assert line in " ".join(result.output.split())
    assert "▁" not in result.output  # pieces shown as text


def test_t5_style_unigram_new_ids_follow_the_sentinels(corpora_dir: Path, tmp_path: Path) -> None:
    """Metaspace pre-tokenizer, no byte fallback, sentinels added after the model's 800 pieces."""
    from tokenizers import AddedToken

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=800, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator([*shipped_texts("general", 30), *shipped_texts("legal", 10)], trainer)
    tokenizer.add_special_tokens([AddedToken(f"<extra_id_{i}>", special=True) for i in range(3)])
    assert tokenizer.token_to_id("<extra_id_2>") == 802
    base_dir = tmp_path / "t5"
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    ).save_pretrained(str(base_dir))
    manifest = extend_tokenizer(base_dir, [("legal", corpora_dir / "legal.jsonl")], 20, tmp_path / "ext")
    mapping = load_added_tokens_map(tmp_path / "ext" / "added_tokens_map.json")
    assert mapping.base_vocab_size == 803 and [t.id for t in mapping.tokens] == list(range(803, 823))
    assert manifest["tokens_after"] < manifest["tokens_before"]
    new = Tokenizer.from_file(str(tmp_path / "ext" / "tokenizer.json"))
    assert new.token_to_id("<extra_id_2>") == 802 and new.get_vocab_size() == 823
    added = [t.token.replace("▁", " ") for t in mapping.tokens]
    clean = [line for line in other_domain_lines()[:3000] if not any(t in " " + line for t in added)]
    assert len(clean) >= 100
    for line in clean + ["<extra_id_1> text"]:
        assert new.encode(line).ids == tokenizer.encode(line).ids


def write_llama2_style(out: Path, texts: list[str]) -> Path:
    """SentencePiece BPE as Llama-2's tokenizer.json has it: Metaspace without splitting (the whole
    text is one BPE word), byte fallback to <0xNN> pieces, no merge across a "▁" word start."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=800, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    spec = json.loads(tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    spec["model"].update(byte_fallback=True, fuse_unk=True)
    spec["pre_tokenizer"] = {
        "type": "Metaspace",
        "replacement": "▁",
        "prepend_scheme": "first",
        "split": False,
    }
    spec["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}  # fmt: skip
    PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    ).save_pretrained(str(out))
    return out


def test_llama2_style_bpe_merges_words_never_bytes(corpora_dir: Path, tmp_path: Path) -> None:
    base_dir = write_llama2_style(
        tmp_path / "l2", [*shipped_texts("general", 30), *shipped_texts("legal", 10)]
    )
    base = Tokenizer.from_file(str(base_dir / "tokenizer.json"))
    assert base.encode("日本", add_special_tokens=False).tokens[-1].startswith("<0x")
    manifest = extend_tokenizer(base_dir, [("legal", corpora_dir / "legal.jsonl")], 30, tmp_path / "ext")
    assert manifest["base_model"] == "BPE" and manifest["tokens_after"] < manifest["tokens_before"]
    mapping = load_added_tokens_map(tmp_path / "ext" / "added_tokens_map.json")
    assert all("<0x" not in t.token and "▁" not in t.token[1:] for t in mapping.tokens)
    new = Tokenizer.from_file(str(tmp_path / "ext" / "tokenizer.json"))
    added = [t.token.replace("▁", " ") for t in mapping.tokens]
    clean = [line for line in other_domain_lines()[:3000] if not any(t in " " + line for t in added)]
    assert len(clean) >= 100
    for line in clean:
        assert (
            new.encode(line, add_special_tokens=False).ids == base.encode(line, add_special_tokens=False).ids
        )
    text = "日本 ✓ " + shipped_texts("legal", 1)[0][:400]
    ids = new.encode(text, add_special_tokens=False).ids
    assert any(i >= mapping.base_vocab_size for i in ids) and new.decode(ids) == text


@pytest.mark.parametrize("extended", BASES, indirect=True)
def test_a_mix_with_an_extended_tokenizer_holds_its_own_ids(
    extended: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    """`domainlm mix` picks its encoder (tiktoken when proved equal, else tokenizers) for an extended
    tokenizer too; the held-out ids it writes are the tokenizer's own, new ids included."""
    import gzip

    import numpy as np

    from domainlm.mix.build import build_mix
    from domainlm.mix.dataset import open_mix
    from tests.mix.conftest import small_config

    _, out, extension = extended
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    write_jsonl(corpora / "fin.jsonl", [t[:8000] for t in shipped_texts("legal", 20)])
    write_jsonl(corpora / "gen.jsonl", [t[:6000] for t in shipped_texts("general", 40)])
    result = build_mix(small_config(corpora, tmp_path / "mix", tokenizer=str(out)), quiet=True, cache=False)
    manifest = open_mix(result.out)
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert manifest.vocab_size == tokenizer.get_vocab_size()
    # Unigram has no tiktoken form; the extended Llama-3 style BPE converts and is proved equal.
    assert manifest.tokenizer.encoder == (
        "tokenizers" if extension["base_model"] == "Unigram" else "tiktoken"
    )
    source = next(s for s in manifest.sources if s.name == "fin")
    with gzip.open(result.out / source.val.text_path, "rt", encoding="utf-8") as handle:
        texts = [json.loads(line)["text"] for line in handle]
    ids = [
        i for t in texts for i in [*tokenizer.encode(t, add_special_tokens=False).ids, manifest.eos_token_id]
    ]
    packed = np.fromfile(result.out / source.val.path, dtype=manifest.dtype)
    assert packed.tolist() == ids[: source.val.sequences * manifest.seq_len]
    base_vocab = json.loads((out / "added_tokens_map.json").read_text())["base_vocab_size"]
    assert (packed >= base_vocab).any()
