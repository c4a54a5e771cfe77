import pytest

from domainlm.errors import ConfigError
from domainlm.plan.memory import (
    STRATEGIES,
    USABLE_FRACTION,
    activation_bytes,
    allowed_strategies,
    estimate_memory,
    layer_activation_bytes,
    model_state_bytes,
)
from domainlm.plan.shapes import make_shape

BY_NAME = {s.name: s for s in STRATEGIES}


@pytest.mark.parametrize(
    ("strategy", "gb"),
    # ZeRO paper (Rajbhandari et al. 2019), figure 1: 7.5B parameters, Nd = 64, K = 12.
    [("ddp", 120.0), ("zero1", 31.4), ("zero2", 16.6), ("zero3", 1.9)],
)
def test_zero_paper_model_states(strategy, gb):
    states = model_state_bytes(7.5e9, "bf16", BY_NAME[strategy], 64)
    assert states.gpu_total / 1e9 == pytest.approx(gb, abs=0.05)
    assert states.cpu == 0


def test_zero_paper_formulas_term_by_term():
    psi, nd = 7.5e9, 64
    z2 = model_state_bytes(psi, "fp16", BY_NAME["zero2"], nd)
    assert (z2.weights, z2.grads, z2.optimizer) == (2 * psi, 2 * psi / nd, 12 * psi / nd)
    fp32 = model_state_bytes(psi, "fp32", BY_NAME["ddp"], nd)
    assert fp32.gpu_total == 16 * psi  # 4 weights + 4 grads + 8 Adam moments


def test_offload_moves_states_to_cpu():
    psi, nd = 1e9, 8
    opt = model_state_bytes(psi, "bf16", BY_NAME["zero2+offload-opt"], nd)
    assert (opt.weights, opt.grads, opt.optimizer) == (2 * psi, 0, 0)
    assert opt.cpu == (12 + 2) * psi / nd
    everything = model_state_bytes(psi, "bf16", BY_NAME["zero3+offload-all"], nd)
    assert everything.gpu_total == 0
    assert everything.cpu == 16 * psi / nd


def test_korthikanti_layer_formula_hand_checked():
    # GPT-3-like layer: h = 4096, a = 32, s = 2048, b = 1, MLP 4h, no recompute:
    # s·b·h·(34 + 5·a·s/h) = 2048 * 4096 * (34 + 5 * 32 * 2048 / 4096) = 8,388,608 * 114.
    gpt = make_shape("gpt2", 1, 4096, 32, 50257)
    assert layer_activation_bytes(gpt, 2048, 1, flash_attention=False) == 8_388_608 * 114
    # FlashAttention never stores the a·s² scores: 34·s·b·h.
    assert layer_activation_bytes(gpt, 2048, 1, flash_attention=True) == 8_388_608 * 34
    # Llama as HF saves it: (24h + 8f)·sb + 6·a·s²·b (see layer_activation_bytes).
    llama = make_shape("llama", 1, 4096, 32, 32000)
    sb = 2048 * 2
    expected = sb * (24 * 4096 + 8 * 11008) + 6 * 32 * 2048 * 2048 * 2
    assert layer_activation_bytes(llama, 2048, 2, flash_attention=False) == expected


def test_checkpointing_keeps_layer_inputs_plus_one_layer():
    shape = make_shape("llama", 32, 4096, 32, 32000)
    s, b = 2048, 1
    layer = layer_activation_bytes(shape, s, b, flash_attention=True)
    logits = s * b * 32000 * (2 + 8)
    edges = 8 * s * b * 4096  # final RMSNorm, as HF Llama saves it
    full = activation_bytes(shape, s, b, "bf16", checkpointing=False)
    ckpt = activation_bytes(shape, s, b, "bf16", checkpointing=True)
    assert full == 32 * layer + edges + logits
    assert ckpt == 32 * 2 * s * b * 4096 + layer + edges + logits
    assert ckpt < full / 5  # layers shrink ~16x; the logits (655 MB here) do not


def test_max_micro_batch_is_the_boundary():
    shape = make_shape("llama", 16, 2048, 16, 32000)
    gpu = 40 * 1024**3
    kw = dict(seq_len=2048, precision="bf16", num_gpus=8, strategy=BY_NAME["zero2"], checkpointing=False)
    best = estimate_memory(shape, micro_batch=1, gpu_memory_bytes=gpu, **kw).max_micro_batch
    assert best >= 1
    assert estimate_memory(shape, micro_batch=best, gpu_memory_bytes=gpu, **kw).fits
    over = estimate_memory(shape, micro_batch=best + 1, gpu_memory_bytes=gpu, **kw)
    assert not over.fits and over.total > gpu * USABLE_FRACTION


def test_allowed_strategies_by_offload():
    assert [s.name for s in allowed_strategies("none")] == ["ddp", "zero1", "zero2", "zero3"]
    assert "zero3+offload-all" not in [s.name for s in allowed_strategies("optimizer")]
    assert len(allowed_strategies("params")) == len(STRATEGIES)
    with pytest.raises(ConfigError, match="--offload 'disk'"):
        allowed_strategies("disk")
    with pytest.raises(ConfigError, match="--precision 'int8'"):
        model_state_bytes(1e9, "int8", BY_NAME["ddp"], 1)
