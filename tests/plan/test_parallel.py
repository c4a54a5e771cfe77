import pytest

from domainlm.errors import ConfigError
from domainlm.plan import PlanInputs, ShapeSpec, make_plan
from domainlm.plan.parallel import (
    MegatronLayout,
    bubble_fraction,
    layer_activation_bytes_tp,
    megatron_memory,
    validate_layout,
)
from domainlm.plan.shapes import make_shape

# GPT-3 175B (Brown et al. 2020): 96 layers, h = 12288, 96 heads; s = 2048.
GPT3 = make_shape("gpt2", 96, 12288, 96, 51200, max_positions=2048)
SBH = 2048 * 1 * 12288


@pytest.mark.parametrize(
    ("sequence_parallel", "recompute", "per_sbh"),
    [
        (False, "none", 10 + 24 / 8 + 5 * 96 * 2048 / (12288 * 8)),  # = 23
        (True, "none", 34 / 8 + 5 * 96 * 2048 / (12288 * 8)),  # = 14.25
        (False, "selective", 10 + 24 / 8),
        (True, "selective", 34 / 8),  # = 4.25
        (False, "full", 2),
        (True, "full", 2 / 8),
    ],
)
def test_korthikanti_table_2(sequence_parallel, recompute, per_sbh):
    """Korthikanti et al. 2022 Table 2, activation bytes per layer at t = 8 for GPT-3 175B:
    sbh(10 + 24/t + 5as/(ht)), with sequence parallelism sbh(34/t + 5as/(ht)), selective recompute
    without the 5as/(ht) term, full recompute 2sbh."""
    layout = MegatronLayout(tensor=8, sequence_parallel=sequence_parallel, recompute=recompute)
    assert layer_activation_bytes_tp(GPT3, 2048, 1, layout) == pytest.approx(SBH * per_sbh)


def test_sequence_parallel_and_selective_recompute_save_5x():
    """Korthikanti et al. 2022 (abstract): the two together reduce activation memory by ~5x."""
    tp = layer_activation_bytes_tp(GPT3, 2048, 1, MegatronLayout(tensor=8))
    both = layer_activation_bytes_tp(GPT3, 2048, 1, MegatronLayout(8, 1, True, "selective"))
    assert tp / both == pytest.approx(23 / 4.25)
    assert 5 <= tp / both < 6


def test_fp32_activations_are_derived_per_tensor():
    """fp32: 16-bit tensors double, 1-byte dropout masks do not: unsplit 18, split 48/t, scores 9as/(ht)."""
    fp32 = layer_activation_bytes_tp(GPT3, 2048, 1, MegatronLayout(tensor=8), "fp32")
    assert fp32 == pytest.approx(SBH * (18 + 48 / 8 + 9 * 96 * 2048 / (12288 * 8)))


def test_bubble_fraction_narayanan():
    """Narayanan et al. 2021 sec. 2.2: bubble (p - 1)/m; interleaved with v stages (p - 1)/(v·m)."""
    assert bubble_fraction(8, 64) == 7 / 64
    assert bubble_fraction(8, 64, virtual_stages=2) == 7 / 128
    assert bubble_fraction(1, 1) == 0


def test_megatron_states_and_first_stage_activations():
    """Megatron-LM distributed optimizer docs: bf16 params + fp32 grads + Adam = 18 bytes/param, 6 + 12/d
    sharded; 175B on 1024 GPUs at t = p = 8 (d = 16): 175B/64 params per GPU; the first stage holds
    L layers' activations (1F1B, p micro-batches of L/p layers); batch 1536 -> m = 96, bubble 7/96."""
    n = GPT3.num_params
    layout = MegatronLayout(tensor=8, pipeline=8, sequence_parallel=True, recompute="selective")
    mem = megatron_memory(
        GPT3, num_params=n, num_gpus=1024, seq_len=2048, micro_batch=1, global_batch_sequences=1536,
        precision="bf16", layout=layout, gpu_memory_bytes=80e9,
    )  # fmt: skip
    assert mem.data == 16 and mem.params_per_gpu == n / 64
    assert mem.model_states == pytest.approx(n / 64 * (6 + 12 / 16))
    assert mem.activations == pytest.approx(96 * SBH * 34 / 8)
    assert (mem.micro_batches, mem.bubble_fraction) == (96, 7 / 96)
    plain = megatron_memory(
        GPT3, num_params=n, num_gpus=1024, seq_len=2048, micro_batch=1, global_batch_sequences=1536,
        precision="bf16", layout=MegatronLayout(8, 8, distributed_optimizer=False), gpu_memory_bytes=None,
    )  # fmt: skip
    assert plain.model_states == pytest.approx(n / 64 * 18)


def test_layout_validation_names_flags():
    """A Megatron layout must divide the GPUs, heads and layers; SP needs t > 1 (Korthikanti et al. 2022)."""
    with pytest.raises(ConfigError, match="--gpus 100 is not divisible by --tensor-parallel 8"):
        validate_layout(100, GPT3, MegatronLayout(tensor=8))
    with pytest.raises(ConfigError, match="--pipeline-parallel 5 must divide the 96 layers"):
        validate_layout(40, GPT3, MegatronLayout(pipeline=5))
    with pytest.raises(ConfigError, match="--sequence-parallel needs --tensor-parallel > 1"):
        validate_layout(8, GPT3, MegatronLayout(sequence_parallel=True))


def test_plan_has_a_separate_megatron_section():
    """Llama-2-70B (68.98B) on 64 A100-80GB at t = 8, p = 2: d = 4, Ψ/16 parameters per GPU."""
    llama70 = ShapeSpec(80, 8192, 64, num_kv_heads=8, ffn_size=28672)
    kw = dict(shape=llama70, gpu_type="a100-80gb", num_gpus=64, nodes=8)
    plan = make_plan(PlanInputs(**kw, tensor_parallel=8, pipeline_parallel=2, sequence_parallel=True))
    m = plan.megatron
    assert (m.tensor, m.pipeline, m.data, m.sequence_parallel) == (8, 2, 4, True)
    assert m.params_per_gpu == pytest.approx(68_976_648_192 / 16)
    assert make_plan(PlanInputs(**kw)).megatron is None
    with pytest.raises(ConfigError, match="--pipeline-parallel 3 must divide the 80 layers"):
        make_plan(PlanInputs(**kw, pipeline_parallel=3))
