"""A run's throughput records + its batch arithmetic -> achieved MFU and HFU and the time left to finish.

`domainlm plan --from-run RUN_DIR` reads the run through pretrain's own readers (the CLI sits above
both stages; plan does not import pretrain) and hands this module plain numbers: the `train` records
of metrics.jsonl, the run's max_steps, tokens per optimizer step, ranks and whether it recomputes
activations. Model FLOPs per token are what the run itself counted (tflops_per_gpu / tokens_per_s_per_gpu,
i.e. 6N + 12·L·H·T); with activation checkpointing the hardware also runs the forward again, a third
more (flops.recompute_flops_per_token, "full"), which is the HFU numerator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from domainlm.errors import DataError

RECENT_INTERVALS = 10  # the time per step is read from the last intervals (the first ones include warm-up)


@dataclass(frozen=True)
class RunProgress:
    """Achieved throughput and utilization of a run, and its projected time to finish."""

    step: int
    max_steps: int
    done: float  # fraction of max_steps
    world_size: int
    recompute: str  # none or full (pretrain's activation checkpointing)
    tokens_per_s_per_gpu: float
    model_flops_per_token: float
    hardware_flops_per_token: float
    model_tflops_per_gpu: float
    peak_flops: float | None  # per GPU; None on CPU or an unknown GPU
    peak_source: str  # "--gpu-type X", "the run's MFU records", or "unknown"
    mfu: float | None
    hfu: float | None
    seconds_per_step: float
    remaining_seconds: float
    intervals_used: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _steps_in(record: Mapping[str, Any], tokens_per_step: int) -> float:
    return float(record["interval_tokens"]) / tokens_per_step


def run_progress(
    records: Iterable[Mapping[str, Any]],
    *,
    max_steps: int,
    tokens_per_step: int,
    world_size: int,
    recompute: str,
    peak_flops: float | None = None,
    peak_source: str = "unknown",
    source: str = "metrics.jsonl",
) -> RunProgress:
    """Progress from the run's `train` records (one per logging interval, as pretrain writes them).

    `peak_flops` overrides the peak the run recorded (its MFU is measured against its own device's peak).
    """
    train = [r for r in records if r.get("kind") == "train" and r.get("tokens_per_s_per_gpu")]
    if not train:
        raise DataError(f"{source}: no train records with a throughput yet; wait for the first log interval")
    recent = train[-RECENT_INTERVALS:]
    seconds = sum(float(r["interval_s"]) for r in recent)
    steps = sum(_steps_in(r, tokens_per_step) for r in recent)
    tokens_per_s = sum(float(r["interval_tokens"]) for r in recent) / seconds / world_size
    last = train[-1]
    model_per_token = float(last["tflops_per_gpu"]) * 1e12 / float(last["tokens_per_s_per_gpu"])
    hardware_per_token = model_per_token * (4.0 / 3.0 if recompute == "full" else 1.0)
    if peak_flops is None and last.get("mfu"):
        peak_flops = float(last["tflops_per_gpu"]) * 1e12 / float(last["mfu"])
        peak_source = "the run's MFU records"
    achieved = tokens_per_s * model_per_token  # model FLOP/s per GPU
    step = int(last["step"])
    seconds_per_step = seconds / steps
    return RunProgress(
        step=step,
        max_steps=max_steps,
        done=step / max_steps,
        world_size=world_size,
        recompute=recompute,
        tokens_per_s_per_gpu=tokens_per_s,
        model_flops_per_token=model_per_token,
        hardware_flops_per_token=hardware_per_token,
        model_tflops_per_gpu=achieved / 1e12,
        peak_flops=peak_flops,
        peak_source=peak_source if peak_flops else "unknown",
        mfu=achieved / peak_flops if peak_flops else None,
        hfu=achieved * hardware_per_token / model_per_token / peak_flops if peak_flops else None,
        seconds_per_step=seconds_per_step,
        remaining_seconds=max(0, max_steps - step) * seconds_per_step,
        intervals_used=len(recent),
    )
