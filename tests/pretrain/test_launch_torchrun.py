"""`--launcher torchrun` (no ssh) trains the tiny recipe on 2 CPU ranks; SIGUSR1 to one rank (Slurm's
warning before the time limit) makes every rank checkpoint the same step and exit, the launch reports it
in one line, and the next launch resumes from that checkpoint. One launch."""

from __future__ import annotations

import json
import signal
import threading
import time

import psutil
import pytest

from domainlm.errors import ResourceError
from domainlm.pretrain.checkpoint import STATE_NAME, complete_checkpoints
from domainlm.pretrain.metrics import read_metrics
from domainlm.pretrain.preempt import PREEMPTED_NAME
from domainlm.pretrain.run import launch, prepare_run

pytestmark = pytest.mark.slow

OVERRIDES = ["train.max_steps=400", "checkpoint.every_steps=1000", "deepspeed.zero_stage=2"]


def _steps(run_dir) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [r["step"] for r in read_metrics(path) if r["kind"] == "train"]


def _worker(run_dir, rank: int) -> psutil.Process | None:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "domainlm.pretrain.worker" in cmdline and str(run_dir) in cmdline:
            try:
                if process.environ().get("RANK") == str(rank):
                    return process
            except psutil.Error:
                continue
    return None


def test_torchrun_trains_and_sigusr1_checkpoints_and_exits(tiny_recipe, tmp_path):
    prepared = prepare_run(tiny_recipe, OVERRIDES, tmp_path / "run", launcher="torchrun")
    assert "torch.distributed.run" in prepared.command and "--hostfile" not in prepared.command
    run_dir = prepared.run_dir
    outcome: dict[str, BaseException] = {}

    def train() -> None:
        try:
            launch(prepared)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=train)
    thread.start()
    deadline = time.monotonic() + 600
    while len(_steps(run_dir)) < 2 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    rank1 = _worker(run_dir, 1)
    assert rank1 is not None, "rank 1 not found"
    rank1.send_signal(signal.SIGUSR1)  # one rank only: the ranks agree through an all-reduce
    thread.join(timeout=600)
    assert not thread.is_alive()
    error = outcome.get("error")
    assert isinstance(error, ResourceError) and "preemption signal (SIGUSR1)" in str(error), error
    marked = json.loads((run_dir / PREEMPTED_NAME).read_text())
    steps = _steps(run_dir)
    assert steps == list(range(1, marked["step"] + 1)) and 2 <= marked["step"] < 400
    saved = complete_checkpoints(run_dir)
    assert [p.name for p in saved] == [f"step_{marked['step']:08d}"]
    state = json.loads((saved[-1] / STATE_NAME).read_text())
    assert state["step"] == marked["step"] and state["consumed_samples"] == 8 * marked["step"]
    assert sorted(p.name for p in saved[-1].glob("rng_rank*.pt")) == ["rng_rank0.pt", "rng_rank1.pt"]
    again = prepare_run(tiny_recipe, OVERRIDES, run_dir, launcher="torchrun")
    assert again.resume_from == saved[-1]  # the requeued job (or a rerun) resumes there
