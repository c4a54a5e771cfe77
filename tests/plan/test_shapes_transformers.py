"""Shape counts against real `transformers` models built on the meta device (no memory, no download)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from domainlm.plan.shapes import make_shape  # noqa: E402


def _hf_count(config) -> int:
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    return model.num_parameters()


@pytest.mark.parametrize("tie", [False, True])
def test_llama_gqa(tie):
    config = transformers.LlamaConfig(
        vocab_size=1000, hidden_size=128, intermediate_size=352, num_hidden_layers=3,
        num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=tie,
    )  # fmt: skip
    shape = make_shape("llama", 3, 128, 8, 1000, num_kv_heads=2, ffn_size=352, tie_embeddings=tie)
    assert shape.num_params == _hf_count(config)


def test_gpt2():
    config = transformers.GPT2Config(vocab_size=1000, n_embd=96, n_layer=3, n_head=4, n_positions=256)
    assert make_shape("gpt2", 3, 96, 4, 1000, max_positions=256).num_params == _hf_count(config)


def test_gpt_neox():
    config = transformers.GPTNeoXConfig(
        vocab_size=1000, hidden_size=96, num_hidden_layers=3, num_attention_heads=4, intermediate_size=384
    )
    assert make_shape("neox", 3, 96, 4, 1000).num_params == _hf_count(config)


def test_bloom():
    config = transformers.BloomConfig(vocab_size=1000, hidden_size=96, n_layer=3, n_head=4)
    assert make_shape("bloom", 3, 96, 4, 1000).num_params == _hf_count(config)
