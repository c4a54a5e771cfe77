"""The coverage report's fast path: tiktoken ids + spans from ids give exactly `tokenizers`' numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from domainlm.tokenizer.bpe_probes import adversarial_texts
from domainlm.tokenizer.coverage import build_coverage_report, pieces_per_word, word_spans
from domainlm.tokenizer.load import load_tokenizer
from domainlm.tokenizer.resolve import resolve_terms
from domainlm.tokenizer.token_spans import FastSpans, TokenizersSpans, span_encoder, spans_from_ids

from .conftest import shipped_texts, write_jsonl


def _valid_unicode(texts: list[str]) -> list[str]:
    """`tokenizers` refuses lone surrogates (the report does too); the rest of the probes."""
    return [t for t in texts if not any(0xD800 <= ord(c) < 0xE000 for c in t)]


def _texts() -> list[str]:
    docs = [*shipped_texts("legal", 30), *shipped_texts("medical", 30), *shipped_texts("finance", 30)]
    return docs + _valid_unicode(adversarial_texts(["<|endoftext|>"]))


def test_spans_from_ids_are_gpt2_offsets() -> None:
    loaded = load_tokenizer("gpt2")
    fast = span_encoder(loaded)
    assert isinstance(fast, FastSpans) and fast.name == "tiktoken"
    texts = _texts()
    for text, (ids, spans), (want_ids, want_spans) in zip(
        texts, fast.encode(texts), TokenizersSpans(loaded).encode(texts), strict=True
    ):
        assert np.array_equal(ids, want_ids), text[:60]
        assert np.array_equal(spans, want_spans), text[:60]  # GPT-2 does not trim offsets: equal exactly


def test_domain_bpe_splits_the_same_words(bpe_dir: Path) -> None:
    loaded = load_tokenizer(bpe_dir)
    fast = span_encoder(loaded)
    assert fast.name == "tiktoken"
    texts = _texts()
    for text, (ids, spans), (want_ids, want_spans) in zip(
        texts, fast.encode(texts), TokenizersSpans(loaded).encode(texts), strict=True
    ):
        starts, ends = word_spans(text)
        assert np.array_equal(ids, want_ids), text[:60]
        got = pieces_per_word(spans, starts, ends)
        assert np.array_equal(got, pieces_per_word(want_spans, starts, ends)), text[:60]


def test_ids_that_do_not_spell_the_text_fall_back() -> None:
    loaded = load_tokenizer("gpt2")
    fast = span_encoder(loaded)
    hello = loaded.tokenizer.encode("Hello world", add_special_tokens=False).ids
    ids = np.asarray(hello, dtype=np.int64)
    assert spans_from_ids(ids, fast.byte_lengths, "Hello world").tolist() == [[0, 5], [5, 11]]
    assert spans_from_ids(ids, fast.byte_lengths, "Hello worlds") is None  # one byte short
    assert spans_from_ids(ids, fast.byte_lengths, "a\ud800") is None  # not UTF-8 at all
    assert spans_from_ids(ids[:0], fast.byte_lengths, "").shape == (0, 2)
    # "<|endoftext|>" is one added token: 13 bytes, one span
    eot = np.asarray([loaded.tokenizer.token_to_id("<|endoftext|>")], dtype=np.int64)
    assert spans_from_ids(eot, fast.byte_lengths, "<|endoftext|>").tolist() == [[0, 13]]


def test_fast_false_and_non_byte_level_use_tokenizers(unigram_dir: Path) -> None:
    assert span_encoder(load_tokenizer("gpt2"), fast=False).name == "tokenizers"
    assert span_encoder(load_tokenizer("bert-base-uncased")).name == "tokenizers"
    assert span_encoder(load_tokenizer(unigram_dir)).name == "tokenizers"


def test_report_numbers_are_identical_with_the_fast_encoder(
    corpora_dir: Path, bpe_dir: Path, tmp_path: Path
) -> None:
    odd = write_jsonl(
        tmp_path / "odd.jsonl",
        [
            "caf\u00e9 na\u00efve \u65e5\u672c\u8a9e\u306e  text \U0001f468\u200d\U0001f469 ok",
            "x<|endoftext|>y  12,345.6\n\n",
        ],
    )
    args = (
        [("gpt2", Path("gpt2")), ("domain", bpe_dir), ("bert", Path("bert-base-uncased"))],
        [("legal", corpora_dir / "legal.jsonl"), ("general", corpora_dir / "general.jsonl"), ("odd", odd)],
        [resolve_terms("legal")],
    )
    fast = build_coverage_report(*args, sample_docs=0)
    slow = build_coverage_report(*args, sample_docs=0, fast=False)
    assert [t["encoder"] for t in fast["tokenizers"]] == ["tiktoken", "tiktoken", "tokenizers"]
    assert [t["encoder"] for t in slow["tokenizers"]] == ["tokenizers"] * 3
    for report in (fast, slow):
        for entry in report["tokenizers"]:
            del entry["encoder"]
    assert json.dumps(fast, sort_keys=True) == json.dumps(slow, sort_keys=True)
    words = {m["tokenizer"]: m["split_word_share"] for m in fast["metrics"] if m["corpus"] == "legal"}
    assert 0 < words["gpt2"] < words["domain"]  # real numbers: a 600-token BPE splits more words
