"""Throughput, TFLOPs and MFU from interval counts (hand-computed), and the log line format."""

from __future__ import annotations

import pytest

from domainlm.pretrain.metrics import (
    MetricsWriter,
    compute_throughput,
    format_duration,
    format_eval_line,
    format_train_line,
    model_flops_per_token,
    peak_flops_for,
    read_metrics,
)


def test_throughput_tflops_and_mfu_by_hand():
    # 1.2B matmul params, 22 layers, H 2048, T 2048: 6 x 1.2e9 + 12 x 22 x 2048 x 2048 = 8.307e9 FLOPs/token.
    per_token = model_flops_per_token(1_200_000_000, 22, 2048, 2048)
    assert per_token == 6 * 1.2e9 + 12 * 22 * 2048 * 2048
    tp = compute_throughput(
        num_tokens=4_000_000, seconds=10.0, num_gpus=8, per_token_flops=per_token, peak_flops=989.4e12
    )
    assert tp.tokens_per_s_per_gpu == 50_000
    assert tp.tflops_per_gpu == pytest.approx(50_000 * per_token / 1e12)  # 415.4
    assert tp.mfu == pytest.approx(50_000 * per_token / 989.4e12)  # 0.4198
    assert compute_throughput(100, 1.0, 2, per_token, None).mfu is None


def test_peak_lookup_by_device_name():
    assert peak_flops_for("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4e12)
    assert peak_flops_for("NVIDIA A100-SXM4-40GB", "bf16") == pytest.approx(312e12)
    assert peak_flops_for(None, "bf16") is None  # CPU
    assert peak_flops_for("Some Future Accelerator", "bf16") is None


def test_train_line_format():
    record = {
        "step": 120,
        "max_steps": 9000,
        "loss": 2.9141,
        "lr": 3e-4,
        "grad_norm": 0.8412,
        "tokens_per_s_per_gpu": 41_200.4,
        "tflops_per_gpu": 120.31,
        "mfu": 0.3851,
        "eta_s": 5 * 3600 + 12 * 60,
    }
    assert format_train_line(record) == (
        "step 120/9000 | loss 2.914 | lr 3.0e-04 | gnorm 0.84 | tok/s/gpu 41,200 | tflops/gpu 120.3 | "
        "mfu 38.5% | eta 5h12m"
    )
    cpu = format_train_line({**record, "mfu": None, "grad_norm": None})
    assert "mfu n/a" in cpu and "gnorm n/a" in cpu


def test_eval_line_and_durations():
    line = format_eval_line(200, "legal", {"loss": 3.12, "perplexity": 22.646, "bits_per_byte": 1.0412})
    assert line == "eval step 200 | legal | loss 3.120 | ppl 22.6 | bpb 1.041"
    assert (
        format_duration(42) == "42s" and format_duration(187) == "3m07s" and format_duration(7260) == "2h01m"
    )


def test_metrics_jsonl_roundtrip(tmp_path):
    writer = MetricsWriter(tmp_path / "metrics.jsonl")
    writer.write({"kind": "train", "step": 1, "loss": 2.5})
    writer.write({"kind": "eval", "step": 1, "domain": "legal", "loss": 2.7})
    writer.close()
    assert [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [2.5, 2.7]
