"""Causal scoring against hand computation: a plain forward pass, log-softmax and gather."""

import math

import pytest
import torch

from domainlm.eval import EvalSettings, evaluate
from domainlm.eval.data import EvalDomain
from domainlm.eval.models import ModelSpec, inspect_model, load_weights
from domainlm.eval.perplexity import causal_rows, prefix_token_id
from domainlm.eval.scoring import batch_rows, score_batches

from .conftest import TEXTS

CPU = torch.device("cpu")


def _load(path):
    info = inspect_model(ModelSpec("m", path))
    return info, load_weights(info, CPU, torch.float32)


def _ids(tokenizer, text):
    return [prefix_token_id(tokenizer), *tokenizer(text, add_special_tokens=False)["input_ids"]]


def _manual_nll(model, ids):
    """Sum of -log p(ids[t] | ids[:t]) for t >= 1, in one forward pass (the text fits the context)."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logprobs = torch.log_softmax(logits[:-1], dim=-1)
    return -logprobs.gather(1, torch.tensor(ids[1:])[:, None]).sum().item()


def _score(info, model, texts, max_length, stride, batch_size=4):
    plan = causal_rows(info.tokenizer, texts, max_length, stride)
    return score_batches(model, batch_rows(plan.rows, batch_size), 0, CPU), plan


def test_loss_perplexity_and_bits_per_byte_match_hand_computation(llama_dir):
    info, model = _load(llama_dir)
    texts = [TEXTS[0], TEXTS[2]]
    assert all(len(_ids(info.tokenizer, t)) <= 64 for t in texts)  # one window each: a plain forward pass
    total = sum(_manual_nll(model, _ids(info.tokenizer, t)) for t in texts)
    num_tokens = sum(len(_ids(info.tokenizer, t)) - 1 for t in texts)
    num_bytes = sum(len(t.encode()) for t in texts)
    domain = EvalDomain("legal", "test", tuple(texts))
    report = evaluate([f"tiny={llama_dir}"], [domain], EvalSettings(device="cpu"))
    result = report.result("tiny", "legal")
    assert result.num_tokens == num_tokens
    assert result.num_bytes == num_bytes
    assert result.loss == pytest.approx(total / num_tokens, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(total / num_tokens), rel=1e-5)
    assert result.bits_per_byte == pytest.approx(total / math.log(2) / num_bytes, rel=1e-5)


def test_windows_equal_a_single_pass_when_the_text_fits(llama_dir):
    info, model = _load(llama_dir)
    ids = _ids(info.tokenizer, TEXTS[0])
    assert len(ids) <= 64
    nll, plan = _score(info, model, TEXTS[:1], max_length=64, stride=8)
    assert len(plan.rows) == 1
    assert nll == pytest.approx(_manual_nll(model, ids), rel=1e-6)


def test_stride_one_equals_brute_force_truncated_context(llama_dir):
    # With stride 1 every token beyond the first window sees exactly max_length - 1 tokens of context.
    info, model = _load(llama_dir)
    ids = _ids(info.tokenizer, TEXTS[0])
    max_length = 8
    contexts = [ids[max(0, t - max_length + 1) : t + 1] for t in range(1, len(ids))]
    with torch.inference_mode():  # one forward per target: -log p(last token | the tokens before it)
        logits = [model(input_ids=torch.tensor([c])).logits[0, -2].double() for c in contexts]
    expected = sum(-torch.log_softmax(lg, -1)[c[-1]].item() for lg, c in zip(logits, contexts, strict=True))
    nll, plan = _score(info, model, TEXTS[:1], max_length=max_length, stride=1)
    assert plan.num_tokens == len(ids) - 1
    assert nll == pytest.approx(expected, rel=1e-5)


def test_long_text_windows_are_close_to_the_full_context(llama_dir):
    info, model = _load(llama_dir)
    full, plan_full = _score(info, model, TEXTS, max_length=64, stride=32)
    windowed, plan_windowed = _score(info, model, TEXTS, max_length=16, stride=8)
    assert plan_windowed.num_tokens == plan_full.num_tokens
    assert len(plan_windowed.rows) > len(plan_full.rows)
    assert windowed == pytest.approx(full, rel=0.02)


@pytest.mark.parametrize("fixture", ["llama_dir", "gpt2_dir"])
def test_batching_and_tail_logits_do_not_change_the_loss(fixture, request, monkeypatch):
    info, model = _load(request.getfixturevalue(fixture))
    one, _ = _score(info, model, TEXTS, max_length=24, stride=10, batch_size=1)
    many, _ = _score(info, model, TEXTS, max_length=24, stride=10, batch_size=5)
    monkeypatch.setattr("domainlm.eval.scoring.keeps_tail_logits", lambda model: False)
    full_logits, _ = _score(info, model, TEXTS, max_length=24, stride=10, batch_size=5)
    assert many == pytest.approx(one, rel=1e-6)
    assert full_logits == pytest.approx(one, rel=1e-6)
