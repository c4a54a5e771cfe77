import pytest

from domainlm.errors import ConfigError
from domainlm.plan.activations import activation_bytes, edge_bytes_per_token, layer_activation_bytes
from domainlm.plan.memory import (
    STRATEGIES,
    USABLE_FRACTION,
    allowed_strategies,
    bytes_per_param,
    estimate_memory,
    model_state_bytes,
    shard_group,
    zero_paper_bytes,
)
from domainlm.plan.shapes import make_shape

BY_NAME = {s.name: s for s in STRATEGIES}


@pytest.mark.parametrize(
    ("stage", "gb"),
    # ZeRO paper (Rajbhandari et al. 2020), figure 1: 7.5B parameters, Nd = 64, K = 12.
    [(0, "120"), (1, "31.4"), (2, "16.6"), (3, "1.88")],
)
def test_zero_paper_model_states(stage, gb):
    """Rajbhandari et al. 2020 fig. 1: baseline 120 GB, Pos 31.4 GB, Pos+g 16.6 GB, Pos+g+p 1.88 GB
    (printed to 3 significant digits)."""
    assert f"{zero_paper_bytes(7.5e9, 'bf16', stage, 64) / 1e9:.3g}" == gb


def test_deepspeed_convention_term_by_term():
    """DeepSpeed keeps an fp32 gradient partition (4 bytes/param/Nd) beside the paper's 2 + 2 + 12;
    at ZeRO-3 the 16-bit gradients go straight into it (18 bytes/param/Nd, DeepSpeed's estimator)."""
    psi, nd = 7.5e9, 64
    z2 = model_state_bytes(psi, "fp16", BY_NAME["zero2"], nd)
    assert (z2.weights, z2.grads, z2.grads_fp32, z2.optimizer) == (
        2 * psi,
        2 * psi / nd,
        4 * psi / nd,
        12 * psi / nd,
    )
    z1 = model_state_bytes(psi, "bf16", BY_NAME["zero1"], nd)
    assert z1.gpu_total == 4 * psi + 16 * psi / nd
    z3 = model_state_bytes(psi, "bf16", BY_NAME["zero3"], nd, largest_module_params=1e8)
    assert (z3.grads, z3.gathered) == (0, 4e8)
    assert z3.gpu_total == 18 * psi / nd + 4e8
    ddp = model_state_bytes(psi, "bf16", BY_NAME["ddp"], nd)
    assert ddp.gpu_total == 20 * psi  # BF16_Optimizer's full fp32 gradient buffer
    fp32 = model_state_bytes(psi, "fp32", BY_NAME["ddp"], nd)
    assert fp32.gpu_total == 16 * psi  # 4 weights + 4 grads + 8 Adam moments, no extra copy


def test_offload_moves_states_to_cpu():
    """ZeRO-Offload (Ren et al. 2021) as DeepSpeed does it: fp32 gradients + optimizer (16 B/param/Nd)
    to the host, + the 16-bit weights (2) with parameter offload: DeepSpeed's estimator's 16 and 18."""
    psi, nd = 1e9, 8
    opt = model_state_bytes(psi, "bf16", BY_NAME["zero2+offload-opt"], nd)
    assert (opt.weights, opt.grads, opt.grads_fp32, opt.optimizer) == (2 * psi, 0, 0, 0)
    assert opt.cpu == (12 + 4) * psi / nd
    everything = model_state_bytes(psi, "bf16", BY_NAME["zero3+offload-all"], nd)
    assert everything.gpu_total == 0
    assert everything.cpu == 18 * psi / nd


@pytest.mark.parametrize(
    ("optimizer", "precision", "expected"),
    [
        ("adamw", "bf16", (2, 2, 12)),
        ("adamw", "fp32", (4, 4, 8)),
        ("adamw-8bit", "bf16", (2, 2, 4 + 2 + 8 / 256)),  # bitsandbytes: uint8 m, v + fp32 absmax / 256
        ("sgd", "bf16", (2, 2, 8)),
        ("sgd", "fp32", (4, 4, 4)),
    ],
)
def test_optimizer_bytes_per_param(optimizer, precision, expected):
    """Adam mixed precision 2 + 2 + 12 = 16 bytes/param (ZeRO paper); 8-bit Adam (Dettmers et al.
    2022) 6.03 of state; SGD with momentum one buffer."""
    assert bytes_per_param(precision, optimizer) == expected
    with pytest.raises(ConfigError, match="--optimizer 'lion'"):
        bytes_per_param("bf16", "lion")


def test_korthikanti_layer_formula_hand_checked():
    """Korthikanti et al. 2022 sec. 4.1: s·b·h·(34 + 5·a·s/h) bytes per GPT layer in 16-bit training."""
    gpt = make_shape("gpt2", 1, 4096, 32, 50257)
    assert layer_activation_bytes(gpt, 2048, 1, flash_attention=False) == 8_388_608 * 114
    assert layer_activation_bytes(gpt, 2048, 1, flash_attention=True) == 8_388_608 * 34
    # fp32, derived per tensor: 34h + 8f + 9as at f = 4h -> 66h + 9as (not 2 x (34h + 5as)).
    fp32 = layer_activation_bytes(gpt, 2048, 1, flash_attention=False, precision="fp32")
    assert fp32 == 2048 * (66 * 4096 + 9 * 32 * 2048)


def test_llama_layer_per_tensor_fp32_is_not_twice_bf16():
    """Llama-2-7B layer per token: bf16 20h + 4kv + 8f + 8 + 4a; fp32 32h + 8kv + 16f + 8 + 4a."""
    h, a, f = 4096, 32, 11008
    llama = make_shape("llama", 1, h, a, 32000)
    bf16 = layer_activation_bytes(llama, 2048, 1, flash_attention=True)
    fp32 = layer_activation_bytes(llama, 2048, 1, flash_attention=True, precision="fp32")
    assert bf16 == 2048 * (24 * h + 8 * f + 8 + 4 * a)
    assert fp32 == 2048 * (40 * h + 16 * f + 8 + 4 * a)
    assert 1.7 < fp32 / bf16 < 1.9


def test_checkpointing_keeps_layer_inputs_plus_one_layer():
    """Full checkpointing keeps each layer's 2·sbh input plus one rebuilt layer (Korthikanti et al. 2022
    sec. 5); the 12 B/token/vocab loss is not checkpointed: Llama-2-7B at s = 2048 shrinks > 5x."""
    shape = make_shape("llama", 32, 4096, 32, 32000)
    s, b = 2048, 1
    layer = layer_activation_bytes(shape, s, b, flash_attention=True)
    loss = s * b * 32000 * 12
    edges = s * b * edge_bytes_per_token(shape, "bf16")
    full = activation_bytes(shape, s, b, "bf16", checkpointing=False)
    ckpt = activation_bytes(shape, s, b, "bf16", checkpointing=True)
    assert full == 32 * layer + edges + loss
    assert ckpt == 32 * 2 * s * b * 4096 + layer + edges + loss
    assert ckpt < full / 5  # layers shrink ~16x; the loss (786 MB here) does not


def test_max_micro_batch_is_the_boundary():
    """The largest micro-batch reported fits within 95% of a 40 GiB GPU and one more does not."""
    shape = make_shape("llama", 16, 2048, 16, 32000)
    gpu = 40 * 1024**3
    kw = dict(seq_len=2048, precision="bf16", num_gpus=8, strategy=BY_NAME["zero2"], checkpointing=False)
    best = estimate_memory(shape, micro_batch=1, gpu_memory_bytes=gpu, **kw).max_micro_batch
    assert best >= 1
    assert estimate_memory(shape, micro_batch=best, gpu_memory_bytes=gpu, **kw).fits
    over = estimate_memory(shape, micro_batch=best + 1, gpu_memory_bytes=gpu, **kw)
    assert not over.fits and over.total > gpu * USABLE_FRACTION


def test_params_override_sizes_the_states_exactly():
    """--params N: the states use N, the shape (its own count) only the activations."""
    shape = make_shape("llama", 32, 4096, 32, 32000)
    kw = dict(
        seq_len=2048, micro_batch=1, precision="bf16", num_gpus=64, checkpointing=False, gpu_memory_bytes=None
    )
    est = estimate_memory(shape, strategy=BY_NAME["zero2"], num_params=7.5e9, **kw)
    assert est.model_states_paper == pytest.approx(16.640625e9)  # 2Ψ + 14Ψ/64
    assert est.weights == 15e9


def test_fsdp_names():
    """FSDP: NO_SHARD = DDP, SHARD_GRAD_OP = ZeRO-2, FULL_SHARD = ZeRO-3, HYBRID_SHARD = shard groups."""
    assert [s.fsdp() for s in STRATEGIES] == [
        "NO_SHARD", "none", "SHARD_GRAD_OP", "FULL_SHARD", "none", "none", "FULL_SHARD+CPUOffload",
    ]  # fmt: skip
    assert BY_NAME["zero3"].fsdp(grouped=True) == "HYBRID_SHARD"
    assert BY_NAME["zero2"].fsdp(grouped=True) == "_HYBRID_SHARD_ZERO2"


def test_allowed_strategies_and_validation():
    """--offload caps the strategies; bad --offload / --precision / --shard-group-size name the flag."""
    assert [s.name for s in allowed_strategies("none")] == ["ddp", "zero1", "zero2", "zero3"]
    assert "zero3+offload-all" not in [s.name for s in allowed_strategies("optimizer")]
    assert len(allowed_strategies("params")) == len(STRATEGIES)
    with pytest.raises(ConfigError, match="--offload 'disk'"):
        allowed_strategies("disk")
    with pytest.raises(ConfigError, match="--precision 'int8'"):
        model_state_bytes(1e9, "int8", BY_NAME["ddp"], 1)
    with pytest.raises(ConfigError, match="--shard-group-size 48 must divide --gpus 512"):
        shard_group(512, 48)
