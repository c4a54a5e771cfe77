"""Eval's fast encoder: the tokenizer's own ids, and identical losses with it on or off."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from domainlm.eval import EvalSettings, evaluate
from domainlm.eval.data import EvalDomain
from domainlm.eval.encoding import text_encoder

from .conftest import TEXTS

ODD = [
    "caf\u00e9 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \U0001f468\u200d\U0001f469 12,345.67\n\n\tend",
    "a literal <s> and </s> and <extra_id_3> inside text, then <pad>",
    "",
]
DOMAINS = [EvalDomain("legal", "t", (TEXTS[0], ODD[0])), EvalDomain("mixed", "t", (*TEXTS[1:], *ODD))]


def _own_ids(tokenizer, texts):
    return [np.asarray(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def test_fast_ids_are_the_tokenizers_own(tokenizer):
    encoder = text_encoder(tokenizer, TEXTS)
    assert encoder.name == "tiktoken"
    texts = [*TEXTS, *ODD, " ".join(TEXTS) * 20]
    for got, want in zip(encoder.encode(texts), _own_ids(tokenizer, texts), strict=True):
        assert got.dtype == np.int64 and np.array_equal(got, want)
    special = tokenizer.convert_tokens_to_ids("<extra_id_3>")
    assert special in encoder.encode([ODD[1]])[0].tolist()  # added tokens in text: their ids, as before


def test_the_tokenizers_own_call_is_kept_when_not_proved(tokenizer, monkeypatch):
    assert text_encoder(tokenizer, fast=False).name == "transformers"
    # split_special_tokens changes what the call does with "<s>": tiktoken is not used, ids unchanged
    monkeypatch.setattr(tokenizer, "split_special_tokens", True)
    encoder = text_encoder(tokenizer)
    assert encoder.name == "transformers"
    assert np.array_equal(encoder.encode([ODD[1]])[0], _own_ids(tokenizer, [ODD[1]])[0])
    monkeypatch.undo()

    class Lowercasing(type(tokenizer)):  # a class with its own step before the backend
        def _encode_plus(self, text, *args, **kwargs):
            return super()._encode_plus([t.lower() for t in text], *args, **kwargs)

    monkeypatch.setattr(tokenizer, "__class__", Lowercasing)
    assert text_encoder(tokenizer).name == "transformers"


@pytest.fixture(scope="module")
def reports(llama_dir, gpt2_dir, bert_dir, t5_dir):
    models = [f"llama={llama_dir}", f"gpt2={gpt2_dir}", f"bert={bert_dir}", f"t5={t5_dir}"]
    settings = EvalSettings(device="cpu", max_length=32, batch_size=4)
    fast = evaluate(models, DOMAINS, settings)
    slow = evaluate(models, DOMAINS, dataclasses.replace(settings, fast_encode=False))
    return fast, slow


def test_losses_are_identical_with_the_fast_encoder(reports, tokenizer):
    fast, slow = reports
    assert [m.encoder for m in fast.models] == ["tiktoken"] * 4
    assert [m.encoder for m in slow.models] == ["transformers"] * 4
    assert fast.results == slow.results  # every loss, perplexity and bits per byte, exactly
    strip = [dataclasses.replace(m, encoder="") for m in fast.models]
    assert strip == [dataclasses.replace(m, encoder="") for m in slow.models]
    # llama prefixes each document with BOS, as before: every text token is scored
    tokens = sum(len(ids) for ids in _own_ids(tokenizer, list(DOMAINS[1].texts)))
    assert (
        fast.result("llama", "mixed").num_tokens == tokens and fast.result("llama", "mixed").num_unscored == 0
    )
    assert all(r.bits_per_byte > 0 for r in fast.results)
