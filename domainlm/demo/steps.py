"""Demo settings -> the exact `domainlm` commands of every stage, run one after another.

The demo is deliberately nothing but the public commands in sequence: each is printed before it
runs, so a user can copy any step and run it alone. It trains three models of one recipe and seed
on the same number of tokens per run, the comparison BloombergGPT's story rests on:
(a) general text only, (b) the 51% finance / 49% general mix from scratch, (c) continued
pretraining of (a) on that mix, with exactly (b)'s recipe, steps and tokens (so (c) has seen twice
the tokens in all: (a)'s, then (b)'s). The untrained baseline is (a) and (b)'s shared initialization,
written by `domainlm pretrain --export-init` from the same recipe and flags.
"""

from __future__ import annotations

import logging
import resource
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
GENERAL_MIX = shipped_mixes_dir() / "general_only.yaml"  # the same general source, val split and seed
FULL_SIZE_RECIPE = "finance"
TINY_RECIPE = "tiny_cpu"
# The three trained models, in the order of the story, as the evaluation and the report name them.
GENERAL, DOMAIN, CONTINUED = "a_general", "b_mix", "c_continued"
UNTRAINED = "untrained"


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo. The defaults finish in under 8 minutes on 2 CPU cores; `quick()` is for tests."""

    out: Path
    tokenizer_vocab: int = 16000
    seq_len: int = 128
    train_steps: int = 150  # per run: (a), (b) and (c) each train this many steps
    zero_stage: int = 3
    num_procs: int = 2
    eval_max_docs: int = 0  # 0 = every held-out document
    # Windows per forward pass. eval's default (8) suits GPUs; on CPU a wider batch spends the time in
    # matmuls, not per-call overhead: 64 windows took 17.6 CPU-s where 8 took 49.8 (--quick's model and
    # held-out text). The logits of one batch hold batch x seq_len x vocab floats: 262 MB at the defaults.
    eval_batch_size: int = 32
    coverage_sample_docs: int = 1000
    generate_prompt: str = "The balance sheet"

    @classmethod
    def quick(cls, out: Path) -> DemoSettings:
        return cls(
            out=out,
            tokenizer_vocab=1000,
            seq_len=64,
            train_steps=30,
            eval_max_docs=1,  # the first held-out document of each domain: four models are scored
            eval_batch_size=128,
            coverage_sample_docs=20,
        )


@dataclass(frozen=True)
class PretrainRun:
    """One `domainlm pretrain` of the demo: its command line and the same run for `prepare_run`."""

    out: Path
    overrides: tuple[str, ...]
    num_procs: int

    def argv(self) -> list[str]:
        sets = [part for override in self.overrides for part in ("--set", override)]
        return ["pretrain", "--recipe", TINY_RECIPE, "--out", str(self.out), *sets]

    def prepare(self):  # noqa: ANN201 - a domainlm.pretrain.run.PreparedRun (imports torch: deferred)
        from domainlm.pretrain.run import prepare_run

        return prepare_run(TINY_RECIPE, list(self.overrides), self.out, num_gpus=self.num_procs)


@dataclass
class Step:
    """One stage of the demo: a title, the command, and what it cost (wall and CPU seconds)."""

    name: str
    title: str
    argv: list[str]
    stdout_to: Path | None = None  # keep a command's stdout (e.g. --json) as an artifact
    # Runs trained in one launch (one start-up of the ranks), as `argv` would train them one by one.
    together: list[PretrainRun] = field(default_factory=list)
    seconds: float = field(default=0.0)
    cpu_seconds: float = field(default=0.0)  # this process and every child it waited for

    def shell(self) -> str:
        commands = [[*run.argv(), "--num-gpus", str(run.num_procs)] for run in self.together] or [self.argv]
        return " && ".join(shlex.join(["domainlm", *argv]) for argv in commands)


def paths(settings: DemoSettings) -> dict[str, Path]:
    """Where each stage writes, under the demo's output directory."""
    out = settings.out
    return {
        "tokenizer": out / "tokenizer",
        "coverage": out / "coverage",
        "mix": out / "mix",
        "mix_general": out / "mix_general",
        "plan_text": out / "plan" / "plan.txt",
        "plan_json": out / "plan" / "plan.json",
        GENERAL: out / GENERAL,
        DOMAIN: out / DOMAIN,
        CONTINUED: out / CONTINUED,
        UNTRAINED: out / UNTRAINED,
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


def pretrain_runs(settings: DemoSettings) -> dict[str, PretrainRun]:
    """(a), (b) and (c): one recipe, seed, step count and batch; only the mix and the start differ."""
    p, s = paths(settings), settings
    common = (
        f"data.seq_len={s.seq_len}",
        f"train.max_steps={s.train_steps}",
        f"deepspeed.zero_stage={s.zero_stage}",
        f"eval.every_steps={max(1, s.train_steps // 3)}",
        f"checkpoint.every_steps={s.train_steps}",
        "logging.every_steps=10",
    )
    domain = (f"data.mix={p['mix']}", *common)
    return {
        GENERAL: PretrainRun(p[GENERAL], (f"data.mix={p['mix_general']}", *common), s.num_procs),
        DOMAIN: PretrainRun(p[DOMAIN], domain, s.num_procs),
        CONTINUED: PretrainRun(
            p[CONTINUED], (*domain, f"model.init_from={p[GENERAL] / 'export'}"), s.num_procs
        ),
    }


def _mix_step(name: str, title: str, mix_yaml: Path, out: Path, settings: DemoSettings) -> Step:
    argv = ["mix", str(mix_yaml), "--tokenizer", str(paths(settings)["tokenizer"])]
    return Step(
        name, title, [*argv, "--seq-len", str(settings.seq_len), "--out", str(out), "--overwrite", "--quiet"]
    )


def _data_steps(settings: DemoSettings) -> list[Step]:
    """Tokenizer, its coverage report, and the two mixes (the second re-mixes from the token cache)."""
    p, s = paths(settings), settings
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
            + ["--sample-docs", str(s.coverage_sample_docs), "--out", str(p["coverage"])]
            + ["--overwrite", "--quiet"],
        ),
        _mix_step(
            "mix", "Mix 51% finance / 49% general by tokens into packed shards", FINANCE_MIX, p["mix"], s
        ),
        _mix_step(
            "mix_general",
            "Mix general text only (the same held-out documents), re-using the token cache",
            GENERAL_MIX,
            p["mix_general"],
            s,
        ),
    ]


def build_steps(settings: DemoSettings) -> list[Step]:
    """The commands of the demo, in pipeline order."""
    p, s = paths(settings), settings
    runs = pretrain_runs(settings)
    models = [f"{UNTRAINED}={p[UNTRAINED]}"] + [f"{name}={p[name] / 'export'}" for name in runs]
    return [
        *_data_steps(settings),
        Step(
            "plan",
            "Plan the full-size finance recipe (recipes/finance.yaml) on its target hardware",
            _plan_argv(),
            stdout_to=p["plan_text"],
        ),  # fmt: skip
        Step(
            "plan_json",
            "The same plan as JSON, for the report",
            [*_plan_argv(), "--json"],
            stdout_to=p["plan_json"],
        ),  # fmt: skip
        Step(
            "pretrain",
            f"Pretrain (a) on general text and (b) on the 51/49 mix, same seed and tokens: DeepSpeed "
            f"ZeRO-{s.zero_stage} on {s.num_procs} ranks, both in one launch",
            runs[GENERAL].argv(),
            together=[runs[GENERAL], runs[DOMAIN]],
        ),
        Step(
            "continue",
            "Continue pretraining (a) on the 51/49 mix: (b)'s recipe, steps and tokens, (a)'s weights",
            [*runs[CONTINUED].argv(), "--num-gpus", str(s.num_procs)],
        ),
        Step(
            UNTRAINED,
            "Export (a) and (b)'s shared initialization (same recipe, seed and tokenizer) as the untrained baseline",
            [*runs[DOMAIN].argv(), "--export-init", str(p[UNTRAINED]), "--overwrite"],
        ),
        Step(
            "eval",
            "Per-domain loss, perplexity and bits per byte of the four models on the held-out text",
            ["eval", *(part for model in models for part in ("--model", model))]
            + ["--data", str(p["mix"]), "--batch-size", str(s.eval_batch_size)]
            + ["--out", str(p["eval"]), "--overwrite", "--quiet"]
            + (["--max-docs", str(s.eval_max_docs)] if s.eval_max_docs else []),
        ),
        Step(
            "generate",
            "Sample from the domain model (b) (temperature 0.8, top-k 40)",
            ["generate", "--model", str(p[DOMAIN] / "export"), "-p", s.generate_prompt, "--seed", "0"]
            + ["--temperature", "0.8", "--top-k", "40", "--max-new-tokens", "40", "--json"],
            stdout_to=p["samples"],
        ),
    ]


def _cpu_seconds() -> float:
    """CPU time of this process and of every child it has waited for (the ranks included)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_step(step: Step, env: dict[str, str] | None = None) -> None:
    """Run one step: its command with this interpreter's domainlm (output to stderr, stdout kept if
    asked), or its runs trained together in one launch."""
    started, cpu = time.perf_counter(), _cpu_seconds()
    if step.together:
        _train_together(step)
    else:
        _run_command(step, env)
    step.seconds = time.perf_counter() - started
    step.cpu_seconds = _cpu_seconds() - cpu


def _train_together(step: Step) -> None:
    """`launch_together`: the ranks start once and train each run in turn, as the printed commands would.

    A launch costs ~37 CPU-s before its first step on 2 CPU ranks (importing torch, transformers and
    deepspeed, building the engine): measured in --quick, (c) alone took 45.7 CPU-s for 30 steps and
    (a)+(b) together 54.7 for 60.
    """
    from domainlm.pretrain.run import launch_together

    launch_together([run.prepare() for run in step.together])


def _run_command(step: Step, env: dict[str, str] | None) -> None:
    argv = [sys.executable, "-m", "domainlm", *step.argv]
    if step.stdout_to is None:
        # The steps' tables go to stderr with the logs, so the demo's own stdout stays clean for --json.
        result = subprocess.run(argv, env=env, check=False, stdout=sys.stderr)
    else:
        step.stdout_to.parent.mkdir(parents=True, exist_ok=True)
        with open(step.stdout_to, "w", encoding="utf-8") as handle:
            result = subprocess.run(argv, env=env, check=False, stdout=handle)
    if result.returncode != 0:
        raise ResourceError(
            f"demo step '{step.name}' failed (exit {result.returncode}); rerun it alone: {step.shell()}"
        )
