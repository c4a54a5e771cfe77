import pytest

from domainlm.plan import PlanInputs, ShapeSpec, make_plan
from domainlm.plan.flops import (
    Utilization,
    approx_training_flops,
    budget_flops,
    flops_per_token,
    hardware_flops_per_token,
    mfu,
    narayanan_training_seconds,
    pflops_days,
    recompute_flops_per_token,
    training_seconds,
)


def test_flops_per_token_palm_appendix_b():
    # 7B-like: N = 6.5e9 matmul params, L = 32, H = 4096, T = 2048.
    # 6N = 3.9e10; 12 L H T = 12 * 32 * 4096 * 2048 = 3,221,225,472.
    assert flops_per_token(6.5e9, 32, 4096, 2048) == 3.9e10 + 3_221_225_472


def test_chinchilla_compute():
    # Chinchilla: 70B params x 1.4T tokens -> 6ND = 5.88e23 (the paper's budget is Gopher's 5.76e23).
    assert approx_training_flops(70e9, 1.4e12) == pytest.approx(5.88e23)


def test_mfu_and_time_roundtrip():
    per_token = flops_per_token(1e9, 24, 2048, 2048)
    peak = 312e12
    # 40% of an A100's bf16 peak.
    tokens_per_s = 0.4 * peak / per_token
    assert mfu(per_token, tokens_per_s, peak) == pytest.approx(0.4)
    assert mfu(per_token, 8 * tokens_per_s, peak, num_gpus=8) == pytest.approx(0.4)
    assert mfu(per_token, tokens_per_s, None) is None
    total = budget_flops(64, peak, 24.0, 0.4)
    assert total == pytest.approx(64 * 312e12 * 86400 * 0.4)
    assert training_seconds(total, 64, peak, 0.4) == pytest.approx(86400)
    # BloombergGPT reports ~2.36e23 FLOPs; in petaFLOP/s-days that is ~2731.
    assert pflops_days(2.36e23) == pytest.approx(2731.48, rel=1e-4)


def test_recompute_flops_full_and_selective():
    """Full recompute runs the forward again: 6N + 12LHT -> 8N + 16LHT (Narayanan et al. 2021 eq. 3, whose
    96·B·s·l·h² is 4 passes of 24·B·s·l·h²). Selective recompute (Korthikanti et al. 2022) redoes only
    QK^T and AV, +4LHT: for GPT-3 175B at s = 2048 that is +0.9% of the model FLOPs, against +33% for
    full recompute (hand math: 4·96·12288·2048 / (6·174.6e9 + 12·96·12288·2048))."""
    n, layers, hidden, seq = 174.6e9, 96, 12288, 2048
    model = flops_per_token(n, layers, hidden, seq)
    assert hardware_flops_per_token(n, layers, hidden, seq, "none") == model
    assert hardware_flops_per_token(n, layers, hidden, seq, "full") == pytest.approx(
        8 * n + 16 * layers * hidden * seq
    )
    assert hardware_flops_per_token(n, layers, hidden, seq, "full") / model == pytest.approx(4 / 3)
    selective = hardware_flops_per_token(n, layers, hidden, seq, "selective") / model - 1
    assert selective == pytest.approx(4 * layers * hidden * seq / model) and 0.008 < selective < 0.01
    with pytest.raises(ValueError, match="recompute 'some'"):
        recompute_flops_per_token(n, layers, hidden, seq, "some")


def test_mfu_and_hfu_are_one_time_counted_two_ways():
    """PaLM (Chowdhery et al. 2022 App. B) reports 46.2% MFU and 57.8% HFU for the same run; with full
    recompute HFU = 4/3 MFU. Given HFU, the time is charged for the recomputed FLOPs; given MFU, it is in it."""
    model, hardware = 3.0, 4.0
    hfu = Utilization("hfu", 0.4)
    assert hfu.mfu_hfu(model, hardware) == pytest.approx((0.3, 0.4))
    assert hfu.seconds(1e9, model, hardware, 8, 1e12) == pytest.approx(1e9 * 4.0 / (8 * 1e12 * 0.4))
    mfu = Utilization("mfu", 0.3)
    assert mfu.mfu_hfu(model, hardware) == pytest.approx((0.3, 0.4))
    assert mfu.seconds(1e9, model, hardware, 8, 1e12) == hfu.seconds(1e9, model, hardware, 8, 1e12)


@pytest.mark.parametrize(
    ("layers", "hidden", "heads", "tokens", "gpus", "tflops", "days"),
    [(96, 12288, 96, 300e9, 1024, 140, 34), (128, 25600, 160, 450e9, 3072, 163, 84)],
)
def test_narayanan_end_to_end_training_time(layers, hidden, heads, tokens, gpus, tflops, days):
    """Narayanan et al. 2021 ("Efficient Large-Scale Language Model Training on GPU Clusters Using
    Megatron-LM") §5.1, eq. 4, time ≈ 8TP/(nX): GPT-3 175B (96 x 12288, 96 heads) on 300B tokens with
    1024 A100s at X = 140 TFLOP/s -> ~34 days; the 1T model (128 x 25600, 160 heads) on 450B tokens with
    3072 A100s at 163 TFLOP/s -> ~84 days. X counts recompute (their eq. 3), so it is HFU x peak; the
    planner, given the same shape, tokens, GPUs and --hfu X/312 with full recompute, lands within 5%
    (it also charges the attention FLOPs eq. 4 drops: +2.8% / +1.3%)."""
    shape = ShapeSpec(layers, hidden, heads)
    plan = make_plan(
        PlanInputs(shape=shape, arch="gpt2", vocab_size=51200, seq_len=2048, tokens=tokens, num_gpus=gpus,
                   gpu_type="a100-80gb", hfu=tflops / 312, recompute="full")
    )  # fmt: skip
    assert plan.compute.recompute == "full"
    assert plan.compute.days == pytest.approx(days, rel=0.05)
    eq4 = narayanan_training_seconds(tokens, plan.shape.num_params, gpus, tflops * 1e12) / 86400
    assert eq4 == pytest.approx(days, rel=0.02)
    assert plan.compute.hfu == pytest.approx(tflops / 312) and plan.compute.mfu < plan.compute.hfu


def test_gpt3_compute_in_pf_days_both_conventions():
    """Brown et al. 2020 (GPT-3) Table D.1: 175B on 300B tokens = 3.14e23 FLOPs = 3,640 PF-days, counted
    as 6ND. The report gives that figure labelled, beside the attention-inclusive total (+2.8%)."""
    plan = make_plan(
        PlanInputs(shape=ShapeSpec(96, 12288, 96), arch="gpt2", vocab_size=50257, seq_len=2048, tokens=300e9)
    )
    c = plan.compute
    assert c.flops_6nd == pytest.approx(3.14e23, rel=0.01)
    assert c.pflops_days_6nd == pytest.approx(3640, rel=0.01)
    assert c.pflops_days / c.pflops_days_6nd == pytest.approx(1.028, abs=0.003)
