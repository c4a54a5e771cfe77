import pytest

from domainlm.plan.flops import (
    approx_training_flops,
    budget_flops,
    flops_per_token,
    mfu,
    pflops_days,
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
