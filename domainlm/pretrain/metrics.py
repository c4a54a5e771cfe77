"""Interval counts (tokens, seconds, ranks) + model shape + GPU peak -> tokens/s/gpu, TFLOPs/gpu, MFU, ETA;
one formatted log line and one metrics.jsonl record per interval.

MFU uses the PaLM count (domainlm.plan.flops.flops_per_token = 6N + 12·L·H·T) over the device's dense
peak for the training dtype (domainlm.plan.hardware); on an unknown device (or the CPU) it is `n/a`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from domainlm.plan.flops import flops_per_token, mfu
from domainlm.plan.hardware import gpu_for_device
from domainlm.pretrain.trackers import Tracker, record_scalars
from domainlm.units import format_duration


@dataclass(frozen=True)
class Throughput:
    tokens_per_s_per_gpu: float
    tflops_per_gpu: float
    mfu: float | None  # fraction of peak; None when the peak is unknown


def compute_throughput(
    num_tokens: int, seconds: float, num_gpus: int, per_token_flops: float, peak_flops: float | None
) -> Throughput:
    """`num_tokens` trained by `num_gpus` ranks together in `seconds` of wall clock."""
    per_gpu = num_tokens / seconds / num_gpus if seconds > 0 else 0.0
    return Throughput(
        tokens_per_s_per_gpu=per_gpu,
        tflops_per_gpu=per_gpu * per_token_flops / 1e12,
        mfu=mfu(per_token_flops, per_gpu, peak_flops),
    )


def model_flops_per_token(matmul_params: int, num_layers: int, hidden_size: int, seq_len: int) -> float:
    return flops_per_token(matmul_params, num_layers, hidden_size, seq_len)


def peak_flops_for(device_name: str | None, precision: str) -> float | None:
    """Dense peak FLOP/s of the device the run is on (None on CPU or an unknown GPU)."""
    if not device_name:
        return None
    spec = gpu_for_device(device_name)
    return None if spec is None else spec.peak(precision)


def eta_seconds(step: int, max_steps: int, seconds_per_step: float) -> float:
    return max(0, max_steps - step) * seconds_per_step


def format_train_line(record: dict[str, Any]) -> str:
    """`step 120/9000 | loss 2.914 | lr 3.0e-04 | gnorm 0.84 | tok/s/gpu 41,200 | tflops/gpu 120.3 | mfu 38.5% |
    mem 61.2 GiB | eta 5h12m | legal 2.871 51.2%/51% | general 2.950 48.8%/49%` (+ `| skipped 2 (5 in all)`)."""
    gnorm = "n/a" if record.get("grad_norm") is None else f"{record['grad_norm']:.2f}"
    mfu_text = "n/a" if record.get("mfu") is None else f"{100 * record['mfu']:.1f}%"
    line = (
        f"step {record['step']}/{record['max_steps']} | loss {record['loss']:.3f} | lr {record['lr']:.1e} | "
        f"gnorm {gnorm} | tok/s/gpu {record['tokens_per_s_per_gpu']:,.0f} | "
        f"tflops/gpu {record['tflops_per_gpu']:.1f} | mfu {mfu_text}"
    )
    if record.get("peak_memory_gib") is not None:
        line += f" | mem {record['peak_memory_gib']:.1f} GiB"
    line += f" | eta {format_duration(record['eta_s'])}"
    for name, source in (record.get("sources") or {}).items():
        loss = "n/a" if source["loss"] is None else f"{source['loss']:.3f}"
        line += f" | {name} {loss} {100 * source['share']:.1f}%/{100 * source['target']:.0f}%"
    if record.get("skipped_steps"):
        line += f" | skipped {record['skipped_steps']} ({record['skipped_steps_total']} in all)"
    return line


class SourceTracker:
    """Per-source tokens consumed so far (from the mix's per-sequence source ids) and interval loss.

    The global samples consumed up to a step boundary are sequences [0, consumed) of the shard order
    (modulo the mix size: RankSlice wraps), so the running counts need only the ids of each new
    range: O(samples per interval), and one pass over the ids on resume.
    """

    def __init__(
        self, names: list[str], targets: list[float], source_ids: Any, seq_len: int, consumed: int
    ) -> None:
        self.names, self.targets, self.ids, self.seq_len = names, targets, source_ids, seq_len
        self.sequences = np.zeros(len(names), dtype=np.int64)
        self.consumed = 0
        self.advance(consumed)

    def advance(self, consumed: int, chunk: int = 1 << 24) -> None:
        """Count the sources of global samples [self.consumed, consumed)."""
        size = len(self.ids)
        for start in range(self.consumed, consumed, chunk):
            index = np.arange(start, min(consumed, start + chunk), dtype=np.int64) % size
            self.sequences += np.bincount(self.ids[index], minlength=len(self.names))[: len(self.names)]
        self.consumed = max(self.consumed, consumed)

    def record(self, nats: list[float], tokens: list[float]) -> dict[str, dict[str, float | None]]:
        """{source: loss over the interval's predicted tokens, tokens so far, their share, target ratio}."""
        total = max(1, int(self.sequences.sum()))
        return {
            name: {
                "loss": nats[k] / tokens[k] if tokens[k] else None,
                "tokens": int(self.sequences[k]) * self.seq_len,
                "share": int(self.sequences[k]) / total,
                "target": self.targets[k],
            }
            for k, name in enumerate(self.names)
        }


def format_eval_line(step: int, name: str, summary: dict[str, Any]) -> str:
    """`eval step 200 | legal | loss 3.120 | ppl 22.6 | bpb 1.041`."""
    bpb = summary.get("bits_per_byte")
    bpb_text = "n/a" if bpb is None else f"{bpb:.3f}"
    return f"eval step {step} | {name} | loss {summary['loss']:.3f} | ppl {summary['perplexity']:.1f} | bpb {bpb_text}"


class MetricsWriter:
    """Appends one JSON object per line to metrics.jsonl (rank 0 only), and passes the numbers to the
    recipe's trackers (domainlm.pretrain.trackers: TensorBoard, W&B, MLflow)."""

    def __init__(self, path: Path, trackers: list[Tracker] | None = None) -> None:
        self.path = path
        self._trackers = list(trackers or [])

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._trackers:
            scalars = record_scalars(record)
            for tracker in self._trackers:
                tracker.log(scalars, record["step"])

    def close(self) -> None:
        for tracker in self._trackers:
            tracker.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl (tests and the demo read losses back)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
