"""Training throughput: `domainlm pretrain` vs the Hugging Face `Trainer`, same model, data, batch and DeepSpeed
JSON, both started by the `deepspeed` launcher on the same ranks, in one run; plus, on a GPU, the MFU of a
~1.1B Llama (the legal recipe's shape) at sequence 2048 in bf16.

    .venv/bin/python benchmarks/bench_train.py                 # CPU: 2 ranks, small Llama, ZeRO-3
    .venv/bin/python benchmarks/bench_train.py --gpu-mfu       # GPU: 1.1B Llama, seq 2048, bf16
    .venv/bin/python benchmarks/bench_train.py --skip-cpu --masking-cost   # data.document_masking off vs on

Tokens/s are steady-state: the first `--warmup` optimizer steps (allocator, kernel selection) are left
out of both. Prints a table and one final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIX_YAML = REPO / "data_mixes" / "legal_50_50.yaml"

# The CPU comparison model: big enough that the step, not the launcher, dominates; small enough for 2 cores.
CPU_MODEL = [
    "model.hidden_size=256",
    "model.num_layers=4",
    "model.num_heads=4",
    "model.intermediate_size=688",
    "model.tie_embeddings=true",
]


def build_tokenizer(out: Path, vocab_size: int) -> Path:
    """A domain BPE (domainlm tokenizer) on the legal + general samples: GPT-2's 50K-row softmax would
    dominate a small CPU model's step and hide the training loop being measured."""
    from domainlm.assets import sample_corpus
    from domainlm.tokenizer.config import TrainConfig
    from domainlm.tokenizer.train import train_tokenizer

    if not (out / "tokenizer.json").is_file():
        corpora = [{"name": d, "paths": [str(sample_corpus(d))]} for d in ("legal", "general")]
        train_tokenizer(TrainConfig(vocab_size=vocab_size, corpora=corpora), out)
    return out


def build_mix(out: Path, seq_len: int, tokenizer: Path | None = None) -> Path:
    from domainlm.mix.build import build_mix as build
    from domainlm.mix.config import apply_flags, load_mix_config

    if not (out / "manifest.json").is_file():
        config = load_mix_config(MIX_YAML, [f"seq_len={seq_len}"])
        tok = str(tokenizer) if tokenizer else None
        build(apply_flags(config, str(MIX_YAML), out=str(out), tokenizer=tok), quiet=True)
    return out


def steady_tokens_per_s(metrics: Path, warmup: int) -> float:
    """Tokens over seconds of the logging intervals after step `warmup` (all ranks together)."""
    from domainlm.pretrain.metrics import read_metrics

    records = [r for r in read_metrics(metrics) if r["kind"] == "train" and r["step"] > warmup]
    return sum(r["interval_tokens"] for r in records) / sum(r["interval_s"] for r in records)


def run_ours(recipe: str, overrides: list[str], out: Path, num_procs: int) -> Path:
    from domainlm.pretrain.run import launch, prepare_run

    return launch(prepare_run(recipe, overrides, out, num_gpus=num_procs))


def run_hf(run_dir: Path, num_procs: int, steps: int, warmup: int) -> float:
    """The HF Trainer on the same ranks via the same launcher; returns steady tokens/s (all ranks)."""
    from domainlm.pretrain.launch import deepspeed_executable, default_port, launch_env, resolve_launch
    from domainlm.pretrain.spec import read_run_spec

    recipe = read_run_spec(run_dir).recipe
    spec = resolve_launch(recipe.launch, num_gpus=num_procs)
    result_path = run_dir / "hf_result.json"
    port = str(default_port(1))
    cmd = deepspeed_executable() + [
        "--num_gpus",
        str(num_procs),
        "--master_port",
        port,
        "--log_level",
        "warning",
    ]
    cmd += [__file__, "--hf-worker", str(run_dir), "--steps", str(steps), "--warmup", str(warmup)]
    subprocess.run(cmd, env=launch_env(spec), check=True)
    return json.loads(result_path.read_text())["tokens_per_s"]


def hf_worker(run_dir: Path, steps: int, warmup: int) -> None:
    """Inside each rank: the HF Trainer with our DeepSpeed JSON, model and data."""
    import torch
    from transformers import AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    from domainlm.mix.dataset import train_dataset
    from domainlm.pretrain.engine import init_distributed, optimizer_groups, shutdown
    from domainlm.pretrain.loop import prepare_model, spec_token_ids
    from domainlm.pretrain.spec import read_run_spec

    spec = read_run_spec(run_dir)
    init_distributed(spec.device)
    if spec.device == "cpu":
        # accelerate finds no backend for a DeepSpeed launch on a CPU-only host and falls back to one
        # process; tell it the truth (gloo, multi-CPU) so the Trainer runs DeepSpeed on both ranks.
        from accelerate.state import DistributedType, PartialState

        PartialState._prepare_backend = lambda self, *a, **k: ("gloo", DistributedType.MULTI_CPU)
    # The optimizer is built here, not by DeepSpeed from the JSON: given an "optimizer" section the
    # Trainer hands DeepSpeed every parameter in one group (weight decay on norms and biases too).
    ds_config = {key: value for key, value in spec.ds_config.items() if key != "optimizer"}
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer_dir)
    model = prepare_model(spec.recipe, spec_token_ids(spec, tokenizer), spec.seq_len)
    data = train_dataset(spec.mix_dir)

    class Sequences(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(data)

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": data[i], "labels": data[i]}

    times: list[float] = []
    # Count forward passes: the Trainer must run gradient_accumulation_steps micro-batches per step
    # like ours, or the comparison would credit it with tokens it never trained on.
    forwards = [0]
    model.register_forward_pre_hook(lambda module, args: forwards.__setitem__(0, forwards[0] + 1))

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter())

    opt, train = spec.recipe.optimizer, spec.recipe.train
    args = TrainingArguments(
        output_dir=str(run_dir / "hf"),
        per_device_train_batch_size=train.micro_batch_size,
        gradient_accumulation_steps=ds_config["gradient_accumulation_steps"],
        max_steps=steps,
        learning_rate=opt.lr,
        weight_decay=opt.weight_decay,
        adam_beta1=opt.betas[0],
        adam_beta2=opt.betas[1],
        adam_epsilon=opt.eps,
        max_grad_norm=opt.grad_clip,
        warmup_steps=opt.warmup_steps,
        lr_scheduler_type="cosine",
        bf16=train.precision == "bf16",
        fp16=train.precision == "fp16",
        logging_steps=steps,  # one host sync per run, like ours per interval
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=train.seed,
        deepspeed=ds_config,
    )

    class SameOptimizer(Trainer):
        """The optimizer ours builds: torch AdamW over engine.optimizer_groups (no decay on norms, biases)."""

        def create_optimizer(self, model=None):
            if self.optimizer is None:
                groups = optimizer_groups(self.model, opt.weight_decay)
                self.optimizer = torch.optim.AdamW(groups, lr=opt.lr, betas=opt.betas, eps=opt.eps)
            return self.optimizer

    SameOptimizer(model=model, args=args, train_dataset=Sequences(), callbacks=[Clock()]).train()
    if int(os.environ.get("RANK", "0")) == 0:
        tokens = (steps - warmup) * ds_config["train_batch_size"] * spec.seq_len
        rate = tokens / (times[-1] - times[warmup - 1])
        micro = ds_config["gradient_accumulation_steps"] * steps
        if forwards[0] != micro:
            raise RuntimeError(f"HF Trainer ran {forwards[0]} micro-batches per rank, expected {micro}")
        (run_dir / "hf_result.json").write_text(
            json.dumps({"tokens_per_s": rate, "micro_batches": forwards[0]})
        )
    shutdown()


def cpu_overrides(args: argparse.Namespace, mix: Path) -> list[str]:
    return CPU_MODEL + [
        f"data.mix={mix}",
        f"data.seq_len={args.seq_len}",
        "launch.device=cpu",
        f"train.max_steps={args.steps}",
        f"train.micro_batch_size={args.micro_batch}",
        f"train.global_batch_sequences={args.micro_batch * args.num_procs * 2}",
        "train.deterministic=false",
        f"logging.every_steps={args.warmup}",
        "eval.max_sequences=2",
        f"eval.every_steps={args.steps}",
        f"checkpoint.every_steps={args.steps}",
        "checkpoint.export_at_end=false",
        "deepspeed.zero_stage=3",
    ]


def cpu_comparison(args: argparse.Namespace, work: Path) -> dict:
    tokenizer = build_tokenizer(work / "tokenizer", args.vocab_size)
    mix = build_mix(work / "mix", args.seq_len, tokenizer)
    overrides = cpu_overrides(args, mix)
    rows = []
    for repeat in range(args.repeats):
        run_dir = run_ours("tiny_cpu", overrides, work / f"ours{repeat}", args.num_procs)
        ours = steady_tokens_per_s(run_dir / "metrics.jsonl", args.warmup)
        hf = run_hf(run_dir, args.num_procs, args.steps, args.warmup)
        rows.append({"ours_tokens_per_s": ours, "hf_trainer_tokens_per_s": hf, "ratio": ours / hf})
    # Best of the repeats for each side: other work on a shared machine only ever slows a run down.
    ours_best = max(r["ours_tokens_per_s"] for r in rows)
    hf_best = max(r["hf_trainer_tokens_per_s"] for r in rows)
    best = {"ours_tokens_per_s": ours_best, "hf_trainer_tokens_per_s": hf_best, "ratio": ours_best / hf_best}
    return {
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "num_procs": args.num_procs,
        "seq_len": args.seq_len,
        "vocab_size": args.vocab_size,
        "model": CPU_MODEL,
        "zero_stage": 3,
        "tokens_per_step": args.micro_batch * args.num_procs * 2 * args.seq_len,
        "repeats": rows,
        "best": best,
    }


def gpu_mfu(args: argparse.Namespace, work: Path) -> dict:
    """The legal recipe's ~1.1B Llama on one GPU, seq 2048, bf16: MFU from the training metrics."""
    import torch

    mix = build_mix(work / "mix2048", 2048)
    overrides = [
        f"data.mix={mix}",
        "launch.device=cuda",
        "deepspeed.zero_stage=1",
        f"train.micro_batch_size={args.gpu_micro_batch}",
        f"train.global_batch_sequences={args.gpu_micro_batch * 4}",
        "train.total_tokens=null",
        f"train.max_steps={args.steps}",
        f"train.compile={str(args.compile).lower()}",
        f"logging.every_steps={args.warmup}",
        "eval.max_sequences=2",
        f"eval.every_steps={args.steps}",
        f"checkpoint.every_steps={args.steps}",
        "checkpoint.export_at_end=false",
    ]
    run_dir = run_ours("legal", overrides, work / "gpu", 1)
    from domainlm.pretrain.metrics import read_metrics

    records = [
        r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train" and r["step"] > args.warmup
    ]
    return {
        "device": torch.cuda.get_device_name(),
        "tokens_per_s_per_gpu": sum(r["interval_tokens"] for r in records)
        / sum(r["interval_s"] for r in records),
        "tflops_per_gpu": records[-1]["tflops_per_gpu"],
        "mfu": records[-1]["mfu"],
    }


def documents_per_sequence(mix: Path, limit: int = 4000) -> float:
    """Mean documents a packed training sequence holds (EOS count + 1 over the first `limit`)."""
    from domainlm.mix.dataset import train_dataset
    from domainlm.mix.manifest import open_mix

    dataset, eos = train_dataset(mix), open_mix(mix).eos_token_id
    count = min(limit, len(dataset))
    return sum(int((dataset[i][:-1] == eos).sum()) + 1 for i in range(count)) / count


def masking_cost(args: argparse.Namespace, work: Path) -> dict:
    """Our loop with data.document_masking off and on (SDPA, same model, data and batch), best of the
    repeats, alternating the two so that load on a shared machine hits both alike."""
    tokenizer = build_tokenizer(work / "tokenizer", args.vocab_size)
    mix = build_mix(work / "mix", args.seq_len, tokenizer)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for repeat in range(args.repeats):
        for name, flag in (("off", "false"), ("on", "true")):
            overrides = cpu_overrides(args, mix) + [f"data.document_masking={flag}"]
            run_dir = run_ours("tiny_cpu", overrides, work / f"masking_{name}{repeat}", args.num_procs)
            rates[name].append(steady_tokens_per_s(run_dir / "metrics.jsonl", args.warmup))
    off, on = max(rates["off"]), max(rates["on"])
    return {
        "attention": "sdpa",
        "seq_len": args.seq_len,
        "documents_per_sequence": documents_per_sequence(mix),
        "off_tokens_per_s": rates["off"],
        "on_tokens_per_s": rates["on"],
        "best_off": off,
        "best_on": on,
        "cost": 1 - on / off,
    }


def print_table(result: dict) -> None:
    if "cpu" in result:
        print(f"{'repeat':>6} | {'domainlm tok/s':>14} | {'HF Trainer tok/s':>16} | {'ratio':>6}")
        for k, row in enumerate(result["cpu"]["repeats"]):
            print(
                f"{k:>6} | {row['ours_tokens_per_s']:>14,.0f} | {row['hf_trainer_tokens_per_s']:>16,.0f} | "
                f"{row['ratio']:>6.2f}"
            )
        best = result["cpu"]["best"]
        print(
            f"{'best':>6} | {best['ours_tokens_per_s']:>14,.0f} | {best['hf_trainer_tokens_per_s']:>16,.0f} | "
            f"{best['ratio']:>6.2f}"
        )
    if "masking" in result:
        masking = result["masking"]
        print(
            f"document masking (SDPA, seq {masking['seq_len']}, {masking['documents_per_sequence']:.2f} docs/seq)"
        )
        print(f"{'masking':>7} | {'tok/s per repeat':>28} | {'best':>7}")
        for name in ("off", "on"):
            runs = ", ".join(f"{rate:,.0f}" for rate in masking[f"{name}_tokens_per_s"])
            print(f"{name:>7} | {runs:>28} | {masking[f'best_{name}']:>7,.0f}")
        print(f"throughput cost of masking: {100 * masking['cost']:.1f}%")
    if "gpu" in result:
        gpu = result["gpu"]
        print(
            f"{gpu['device']}: {gpu['tokens_per_s_per_gpu']:,.0f} tok/s/gpu, {gpu['tflops_per_gpu']:.1f} TFLOPs, "
            f"MFU {100 * (gpu['mfu'] or 0):.1f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3, help="optimizer steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-procs", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--gpu-mfu", action="store_true", help="also measure MFU of the 1.1B Llama on GPU")
    parser.add_argument("--gpu-micro-batch", type=int, default=4)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument(
        "--masking-cost", action="store_true", help="also measure data.document_masking off vs on (CPU)"
    )
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--hf-worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_worker is not None:
        hf_worker(args.hf_worker, args.steps, args.warmup)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_train_"))
    result: dict = {"bench": "train"}
    if not args.skip_cpu:
        result["cpu"] = cpu_comparison(args, work)
    if args.masking_cost:
        result["masking"] = masking_cost(args, work)
    if args.gpu_mfu:
        result["gpu"] = gpu_mfu(args, work)
    print_table(result)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
