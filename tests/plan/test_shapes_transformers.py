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


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_llama_layer_activations_match_saved_tensors(attention):
    """Count the bytes one HF Llama layer saves for backward (bf16, CPU) with saved-tensor hooks."""
    from domainlm.plan.memory import layer_activation_bytes

    h, heads, f, s, b = 256, 4, 688, 128, 2
    config = transformers.LlamaConfig(
        vocab_size=1000, hidden_size=h, intermediate_size=f, num_hidden_layers=1,
        num_attention_heads=heads, attn_implementation=attention,
    )  # fmt: skip
    model = transformers.AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    x = torch.randn(b, s, h, dtype=torch.bfloat16, requires_grad=True)
    cos_sin = model.model.rotary_emb(x, torch.arange(s).unsqueeze(0).expand(b, s))
    # Parameters (and their transposed views) and the shared RoPE tables are not activations.
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
    skip |= {t.untyped_storage().data_ptr() for t in cos_sin}
    saved: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.model.layers[0](x, position_embeddings=cos_sin, attention_mask=None)
    shape = make_shape("llama", 1, h, heads, 1000, ffn_size=f)
    expected = layer_activation_bytes(shape, s, b, flash_attention=attention != "eager")
    # The formula leaves out per-row statistics (RMSNorm rstd, softmax log-sum-exp): < 1%.
    assert sum(saved.values()) == pytest.approx(expected, rel=0.01)
