"""`domainlm plan --from-run RUN_DIR`: a run dir (run_spec.json + metrics.jsonl) -> achieved MFU/HFU, time to finish.

The CLI sits above both stages: it reads the run through pretrain's readers (`read_run_spec`,
`read_metrics`) and hands plain numbers to `domainlm.plan.progress`, so plan never imports pretrain.
"""

from __future__ import annotations

import json
from pathlib import Path

from domainlm.config import resolve_cli_path
from domainlm.plan.hardware import get_gpu, load_catalog
from domainlm.plan.progress import RunProgress, run_progress
from domainlm.progress import console
from domainlm.units import format_duration


def read_run_progress(run_dir: str | Path, gpu_type: str | None, gpu_catalog: str | None) -> RunProgress:
    """The run's progress; `gpu_type` sets the peak (else the one the run measured its MFU against)."""
    from domainlm.pretrain.metrics import read_metrics
    from domainlm.pretrain.spec import read_run_spec

    run_dir = Path(resolve_cli_path(run_dir))
    spec = read_run_spec(run_dir)
    path = run_dir / "metrics.jsonl"
    precision = spec.recipe.train.precision
    peak, source = None, "unknown"
    if gpu_type is not None:
        gpu = get_gpu(gpu_type, load_catalog(gpu_catalog))
        peak, source = gpu.peak(precision), f"--gpu-type {gpu.name} ({precision})"
    return run_progress(
        read_metrics(path),
        max_steps=spec.max_steps,
        tokens_per_step=spec.tokens_per_step,
        world_size=spec.world_size,
        recompute="full" if spec.recipe.deepspeed.activation_checkpointing else "none",
        peak_flops=peak,
        peak_source=source,
        source=str(path),
    )


def _pct(x: float | None) -> str:
    return "n/a (peak unknown: pass --gpu-type)" if x is None else f"{x:.1%}"


def report_run(run_dir: Path, gpu_type: str | None, gpu_catalog: str | None, as_json: bool) -> None:
    p = read_run_progress(run_dir, gpu_type, gpu_catalog)
    if as_json:
        print(json.dumps(p.to_dict(), indent=2))
        return
    peak = "unknown" if p.peak_flops is None else f"{p.peak_flops / 1e12:,.1f} TFLOP/s ({p.peak_source})"
    lines = [
        f"run {run_dir}: step {p.step:,}/{p.max_steps:,} ({p.done:.1%}) on {p.world_size} GPUs/ranks",
        f"throughput: {p.tokens_per_s_per_gpu:,.0f} tokens/s/GPU, {p.model_tflops_per_gpu:.2f} model TFLOP/s/GPU "
        f"(last {p.intervals_used} intervals)",
        f"FLOPs/token: model {p.model_flops_per_token:.4g} (6N + 12·L·H·T), hardware "
        f"{p.hardware_flops_per_token:.4g} (recompute {p.recompute})",
        f"peak per GPU: {peak}",
        f"MFU {_pct(p.mfu)}, HFU {_pct(p.hfu)}",
        f"time per step {p.seconds_per_step:.3f} s; to finish {format_duration(p.remaining_seconds)} "
        "(projected from the recent steps)",
    ]
    for line in lines:
        console.print(line, highlight=False)
