"""Demo settings -> the exact `domainlm` commands of every stage, run one after another.

The demo is deliberately nothing but the public commands in sequence: each is printed before it
runs, so a user can copy any step and run it alone; the untrained baseline of the evaluation is the
run's own initialization, written by `domainlm pretrain --export-init` from the same recipe and flags.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from domainlm.assets import shipped_mixes_dir
from domainlm.errors import ResourceError

log = logging.getLogger(__name__)

FINANCE_MIX = shipped_mixes_dir() / "finance_51_49.yaml"  # data_mixes/ of a checkout or an install
FULL_SIZE_RECIPE = "finance"
TINY_RECIPE = "tiny_cpu"


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo. The defaults finish in under 10 minutes on 2 CPU cores; `quick()` is for tests."""

    out: Path
    tokenizer_vocab: int = 16000
    seq_len: int = 128
    train_steps: int = 150
    zero_stage: int = 3
    num_procs: int = 2
    eval_max_docs: int = 0  # 0 = every held-out document
    coverage_sample_docs: int = 1000
    generate_prompt: str = "The balance sheet"

    @classmethod
    def quick(cls, out: Path) -> DemoSettings:
        return cls(
            out=out,
            tokenizer_vocab=1000,
            seq_len=64,
            train_steps=30,
            eval_max_docs=2,
            coverage_sample_docs=20,
        )


@dataclass
class Step:
    """One stage of the demo: a title, the command, and how long it took."""

    name: str
    title: str
    argv: list[str]
    stdout_to: Path | None = None  # keep a command's stdout (e.g. --json) as an artifact
    seconds: float = field(default=0.0)

    def shell(self) -> str:
        return shlex.join(["domainlm", *self.argv])


def paths(settings: DemoSettings) -> dict[str, Path]:
    """Where each stage writes, under the demo's output directory."""
    out = settings.out
    return {
        "tokenizer": out / "tokenizer",
        "coverage": out / "coverage",
        "mix": out / "mix",
        "plan_text": out / "plan" / "plan.txt",
        "plan_json": out / "plan" / "plan.json",
        "run": out / "run",
        "export": out / "run" / "export",
        "untrained": out / "untrained",
        "eval": out / "eval",
        "samples": out / "samples.json",
        "report": out / "report.html",
    }


def _plan_argv() -> list[str]:
    """`domainlm plan` for the full-size finance recipe's shape, batch and hardware.

    The vocabulary is left to the planner's default (32,000, Llama's): a full-size run trains a tokenizer
    on its full corpus, not the demo's sample-sized one.
    """
    from domainlm.pretrain.config import load_recipe

    recipe = load_recipe(FULL_SIZE_RECIPE, [])
    model, train, launch = recipe.model, recipe.train, recipe.launch
    argv = ["plan", "--layers", str(model.num_layers), "--hidden", str(model.hidden_size)]
    argv += ["--heads", str(model.num_heads), "--ffn", str(model.intermediate_size)]
    if model.num_kv_heads is not None:
        argv += ["--kv-heads", str(model.num_kv_heads)]
    argv += ["--untie-embeddings"] if not model.tie_embeddings else ["--tie-embeddings"]
    argv += ["--seq-len", "2048", "--tokens", str(train.total_tokens)]
    argv += ["--gpus", str(launch.num_gpus * launch.num_nodes), "--gpu-type", launch.gpu_type]
    argv += ["--precision", train.precision, "--micro-batch", str(train.micro_batch_size)]
    return argv


def _pretrain_argv(settings: DemoSettings) -> list[str]:
    """The tiny run's recipe and overrides: training and --export-init must see the same ones."""
    p, s = paths(settings), settings
    return (
        ["pretrain", "--recipe", TINY_RECIPE, "--out", str(p["run"])]
        + ["--set", f"data.mix={p['mix']}", "--set", f"data.seq_len={s.seq_len}"]
        + ["--set", f"train.max_steps={s.train_steps}", "--set", f"deepspeed.zero_stage={s.zero_stage}"]
        + ["--set", f"eval.every_steps={max(1, s.train_steps // 3)}"]
        + ["--set", f"checkpoint.every_steps={s.train_steps}", "--set", "logging.every_steps=10"]
    )


def build_steps(settings: DemoSettings) -> list[Step]:
    """The commands of the demo, in pipeline order."""
    p = paths(settings)
    s = settings
    return [
        Step(
            "tokenizer",
            "Train a finance tokenizer (byte-level BPE on 51% finance / 49% general text)",
            ["tokenizer", "train", "--corpus", "finance", "--corpus", "general", "--ratio", "finance=0.51"]
            + [
                "--ratio",
                "general=0.49",
                "--vocab-size",
                str(s.tokenizer_vocab),
                "--out",
                str(p["tokenizer"]),
            ]
            + ["--overwrite", "--quiet"],
        ),
        Step(
            "coverage",
            "Vocabulary coverage report: the finance tokenizer against GPT-2",
            ["vocab", "report", "--tokenizer", f"finance-bpe={p['tokenizer']}", "--tokenizer", "gpt2"]
            + ["--corpus", "finance", "--corpus", "general", "--terms", "finance", "--baseline", "gpt2"]
            + [
                "--sample-docs",
                str(s.coverage_sample_docs),
                "--out",
                str(p["coverage"]),
                "--overwrite",
                "--quiet",
            ],
        ),
        Step(
            "mix",
            "Mix 51% finance / 49% general by tokens into packed shards",
            ["mix", str(FINANCE_MIX), "--tokenizer", str(p["tokenizer"]), "--seq-len", str(s.seq_len)]
            + ["--out", str(p["mix"]), "--overwrite", "--quiet"],
        ),
        Step(
            "plan",
            "Plan the full-size finance recipe (recipes/finance.yaml) on its target hardware",
            _plan_argv(),
            stdout_to=p["plan_text"],
        ),
        Step(
            "plan_json",
            "The same plan as JSON, for the report",
            [*_plan_argv(), "--json"],
            stdout_to=p["plan_json"],
        ),
        Step(
            "pretrain",
            f"Pretrain a tiny Llama with DeepSpeed ZeRO-{s.zero_stage} on {s.num_procs} ranks",
            [*_pretrain_argv(settings), "--num-gpus", str(s.num_procs)],
        ),
        Step(
            "untrained",
            "Export the run's exact initialization (same recipe, seed and tokenizer) as the untrained baseline",
            [*_pretrain_argv(settings), "--export-init", str(p["untrained"]), "--overwrite"],
        ),
        Step(
            "eval",
            "Per-domain loss, perplexity and bits per byte: trained model vs its own initialization",
            ["eval", "--model", f"trained={p['export']}", "--model", f"untrained={p['untrained']}"]
            + ["--data", str(p["mix"]), "--out", str(p["eval"]), "--overwrite", "--quiet"]
            + (["--max-docs", str(s.eval_max_docs)] if s.eval_max_docs else []),
        ),
        Step(
            "generate",
            "Sample from the trained model (temperature 0.8, top-k 40)",
            ["generate", "--model", str(p["export"]), "-p", s.generate_prompt, "--seed", "0"]
            + ["--temperature", "0.8", "--top-k", "40", "--max-new-tokens", "40", "--json"],
            stdout_to=p["samples"],
        ),
    ]


def run_step(step: Step, env: dict[str, str] | None = None) -> None:
    """Run one command with this interpreter's domainlm; its output streams to stderr (stdout kept if asked)."""
    argv = [sys.executable, "-m", "domainlm", *step.argv]
    started = time.perf_counter()
    if step.stdout_to is None:
        # The steps' tables go to stderr with the logs, so the demo's own stdout stays clean for --json.
        result = subprocess.run(argv, env=env, check=False, stdout=sys.stderr)
    else:
        step.stdout_to.parent.mkdir(parents=True, exist_ok=True)
        with open(step.stdout_to, "w", encoding="utf-8") as handle:
            result = subprocess.run(argv, env=env, check=False, stdout=handle)
    step.seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise ResourceError(
            f"demo step '{step.name}' failed (exit {result.returncode}); rerun it alone: {step.shell()}"
        )
