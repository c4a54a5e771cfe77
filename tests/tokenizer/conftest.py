"""Small corpora and tokenizers trained once per session, so tokenizer tests stay fast."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from domainlm.assets import sample_corpus
from domainlm.tokenizer.config import TrainConfig
from domainlm.tokenizer.train import train_tokenizer


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def shipped_texts(domain: str, num_docs: int) -> list[str]:
    with gzip.open(sample_corpus(domain), "rt", encoding="utf-8") as handle:
        return [json.loads(line)["text"] for _, line in zip(range(num_docs), handle, strict=False)]


@pytest.fixture(scope="session")
def corpora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpora")
    write_jsonl(folder / "legal.jsonl", shipped_texts("legal", 40))
    write_jsonl(folder / "general.jsonl", shipped_texts("general", 8))
    return folder


def small_config(corpora_dir: Path, **overrides) -> TrainConfig:
    data = {"vocab_size": 600, "corpora": [{"name": "legal", "paths": [str(corpora_dir / "legal.jsonl")]}]}
    data.update(overrides)
    return TrainConfig.model_validate(data)


@pytest.fixture(scope="session")
def bpe_dir(corpora_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "bpe"
    train_tokenizer(small_config(corpora_dir, model="bpe"), out)
    return out


@pytest.fixture(scope="session")
def unigram_dir(corpora_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "unigram"
    specials = {"mask": "<mask>", "num_sentinels": 3}
    train_tokenizer(small_config(corpora_dir, model="unigram", special_tokens=specials), out)
    return out


def write_wordpiece(folder: Path, words: list[str]) -> Path:
    """A tiny hand-made WordPiece tokenizer (no normalizer), so token counts can be done by hand."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", *words])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[UNK]").save_pretrained(
        str(folder)
    )
    return folder


HAND_WORDS = ["the", "cat", "##s", "sat", "on", "a", "mat", "jud", "##ic", "##ata", "res", ",", "."]


@pytest.fixture(scope="session")
def hand_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two WordPiece tokenizers, a two-document corpus and a term list, all countable by hand."""
    folder = tmp_path_factory.mktemp("hand")
    return {
        "small": write_wordpiece(folder / "small", HAND_WORDS),
        "big": write_wordpiece(folder / "big", [*HAND_WORDS, "cats", "judicata"]),
        "corpus": write_jsonl(folder / "hand.jsonl", ["the cats sat on the mat.", "res judicata, dög"]),
        "terms": _write(folder / "terms.txt", "res judicata\ncats\n\n# a comment\ncats\n"),
    }


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
