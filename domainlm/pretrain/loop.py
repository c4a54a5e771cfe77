"""Run dir (resolved recipe + run.json) -> one rank's training: steps, interval logs, evals, checkpoints, export.

Runs inside each process the launcher starts (domainlm.pretrain.worker). The step has no host sync:
losses stay on the device and are fetched (and averaged over ranks) once per logging interval.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domainlm.eval.metrics import summarize_loss
from domainlm.mix.dataset import open_mix
from domainlm.pretrain import checkpoint as ckpt
from domainlm.pretrain import engine as ds
from domainlm.pretrain.config import Recipe, gradient_accumulation_steps, max_steps, recipe_from_dict
from domainlm.pretrain.data import TrainBatches, open_val_sets, val_batches
from domainlm.pretrain.metrics import (
    MetricsWriter,
    compute_throughput,
    eta_seconds,
    format_eval_line,
    format_train_line,
    model_flops_per_token,
    peak_flops_for,
)
from domainlm.pretrain.model import TokenIds, attention_shape, build_model, matmul_params
from domainlm.pretrain.objectives import IGNORE_INDEX, Objective, build_objective, special_ids_from_tokenizer

log = logging.getLogger("domainlm.pretrain")

RUN_INFO = "run.json"  # what the launcher resolved: mix dir, tokenizer dir, device, force_resume


@dataclass
class Context:
    """Everything one rank needs, built once before the first step."""

    recipe: Recipe
    run_dir: Path
    rank: int
    world_size: int
    engine: Any
    objective: Objective
    batches: TrainBatches
    accumulation: int
    max_steps: int
    step: int
    seq_len: int
    flops_per_token: float
    peak_flops: float | None
    tokenizer_dir: Path
    metrics: MetricsWriter | None


def set_determinism(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # Same inputs -> bitwise-same losses on CPU, so a resumed run matches an uninterrupted one.
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def setup_logging(run_dir: Path, rank: int) -> None:
    """Rank 0 logs to the console; every rank to logs/rank<r>.log."""
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [logging.FileHandler(run_dir / "logs" / f"rank{rank}.log")]
    if rank == 0:
        handlers.append(logging.StreamHandler())
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=handlers, force=True)
    for noisy in ("DeepSpeed", "deepspeed", "torch.distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load_run(run_dir: Path) -> tuple[Recipe, dict[str, Any]]:
    from domainlm.config import read_yaml

    recipe = recipe_from_dict(read_yaml(run_dir / "recipe.yaml"), str(run_dir / "recipe.yaml"))
    info = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))
    return recipe, info


def prepare_model(recipe: Recipe, tokenizer: Any, seq_len: int) -> torch.nn.Module:
    """The recipe's model at the tokenizer's vocabulary (built or loaded, extended, checkpointing set)."""
    ids = TokenIds(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = build_model(recipe.model, ids, seq_len, recipe.train.seed)
    if recipe.model.added_tokens_map is not None:
        from domainlm.pretrain.vocab_init import extend_embeddings

        extend_embeddings(model, recipe.model.added_tokens_map, vocab_size=len(tokenizer))
    if recipe.deepspeed.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def build_context(run_dir: Path) -> Context:
    from transformers import AutoTokenizer

    recipe, info = load_run(run_dir)
    rank, world_size = ds.init_distributed(info["device"])
    setup_logging(run_dir, rank)
    set_determinism(recipe.train.seed, recipe.train.deterministic)
    manifest = open_mix(info["mix_dir"])
    seq_len = manifest.seq_len
    tokenizer = AutoTokenizer.from_pretrained(info["tokenizer_dir"])
    model = prepare_model(recipe, tokenizer, seq_len)
    layers, hidden = attention_shape(model)
    per_token = model_flops_per_token(matmul_params(model), layers, hidden, seq_len)
    objective = build_objective(
        recipe.objective.name,
        vocab_size=len(tokenizer),
        special=special_ids_from_tokenizer(tokenizer),
        seq_len=seq_len,
        seed=recipe.train.seed,
        mlm_probability=recipe.objective.mlm_probability,
        noise_density=recipe.objective.noise_density,
        mean_noise_span_length=recipe.objective.mean_span_length,
    )
    total_steps = max_steps(recipe.train, seq_len)
    ds_config = ds.build_deepspeed_config(recipe, seq_len, world_size)
    engine = ds.initialize(model, ds_config, ds.build_scheduler_fn(recipe, total_steps))
    if recipe.train.compile:
        ds.compile_engine(engine)
    current = ckpt.TrainerState(0, 0, world_size, manifest.fingerprint, manifest.tokenizer.fingerprint)
    step, consumed = _maybe_resume(engine, run_dir, current, rank, info.get("force_resume", False))
    device_name = torch.cuda.get_device_name() if ds.accelerator_name() == "cuda" else None
    metrics = None
    if rank == 0:
        tb = run_dir / "tb" if recipe.logging.tensorboard else None
        metrics = MetricsWriter(run_dir / "metrics.jsonl", tb)
    return Context(
        recipe=recipe,
        run_dir=run_dir,
        rank=rank,
        world_size=world_size,
        engine=engine,
        objective=objective,
        batches=TrainBatches(
            _train_dataset(manifest), rank, world_size, recipe.train.micro_batch_size, consumed
        ),
        accumulation=gradient_accumulation_steps(recipe.train, seq_len, world_size),
        max_steps=total_steps,
        step=step,
        seq_len=seq_len,
        flops_per_token=per_token,
        peak_flops=peak_flops_for(device_name, recipe.train.precision),
        tokenizer_dir=Path(info["tokenizer_dir"]),
        metrics=metrics,
    )


def _train_dataset(manifest: Any) -> Any:
    from domainlm.mix.dataset import train_dataset

    return train_dataset(manifest.root)


def _maybe_resume(
    engine: Any, run_dir: Path, current: ckpt.TrainerState, rank: int, force: bool
) -> tuple[int, int]:
    """(step, consumed_samples) of the latest complete checkpoint, restored into the engine; (0, 0) if none."""
    found = ckpt.latest_checkpoint(run_dir)
    if found is None:
        return 0, 0
    path, state = found
    ckpt.check_resumable(state, current, path, force)
    ckpt.restore(engine, path, rank)
    log.info("resumed from %s: step %d, %d samples consumed", path, state.step, state.consumed_samples)
    return state.step, state.consumed_samples


def train_step(ctx: Context) -> torch.Tensor:
    """One optimizer step (accumulation micro-batches); returns the mean loss as a device tensor."""
    engine, device = ctx.engine, ds.device_of(ctx.engine)
    total = torch.zeros((), device=device)
    for micro in range(ctx.accumulation):
        batch = ctx.batches.next().to(device, non_blocking=True)
        inputs = ctx.objective(batch, ctx.step * ctx.accumulation + micro, ctx.rank)
        loss = engine(**inputs).loss
        engine.backward(loss)
        engine.step()
        total += loss.detach().float()
    return total / ctx.accumulation


def _all_mean(values: torch.Tensor, world_size: int) -> list[float]:
    """Average a small tensor over ranks and fetch it: the one host sync of a logging interval."""
    values = values.detach().float().clone()
    torch.distributed.all_reduce(values)
    return (values / world_size).cpu().tolist()


def log_interval(ctx: Context, losses: list[torch.Tensor], seconds: float) -> None:
    step_losses = _all_mean(torch.stack(losses), ctx.world_size)
    tokens = len(losses) * ctx.accumulation * ctx.world_size * ctx.recipe.train.micro_batch_size * ctx.seq_len
    tp = compute_throughput(tokens, seconds, ctx.world_size, ctx.flops_per_token, ctx.peak_flops)
    record = {
        "kind": "train",
        "step": ctx.step,
        "max_steps": ctx.max_steps,
        "loss": sum(step_losses) / len(step_losses),
        "step_losses": step_losses,
        "lr": ctx.engine.get_lr()[0],
        "grad_norm": ds.grad_norm(ctx.engine),
        "tokens_per_s_per_gpu": tp.tokens_per_s_per_gpu,
        "tflops_per_gpu": tp.tflops_per_gpu,
        "mfu": tp.mfu,
        "consumed_samples": ctx.batches.consumed_samples,
        "interval_tokens": tokens,
        "interval_s": seconds,
        "eta_s": eta_seconds(ctx.step, ctx.max_steps, seconds / len(losses)),
    }
    if ctx.rank == 0:
        log.info(format_train_line(record))
        ctx.metrics.write(record)


@torch.no_grad()
def evaluate(ctx: Context, val_sets: list) -> None:
    """Loss / perplexity / bits per byte on each domain's held-out sequences, summed over ranks."""
    engine, device = ctx.engine, ds.device_of(ctx.engine)
    engine.eval()
    micro = ctx.recipe.eval.micro_batch_size or ctx.recipe.train.micro_batch_size
    causal = ctx.objective.model_family == "causal"
    for val in val_sets:
        sums = torch.zeros(2, device=device, dtype=torch.float64)  # [nats, predicted tokens]
        for index, batch in enumerate(val_batches(val, micro)):
            # Fixed (step, rank) streams: the same masks at every eval, so evals compare across steps.
            inputs = ctx.objective(batch.to(device), index, ctx.rank)
            labels = inputs["labels"][:, 1:] if causal else inputs["labels"]
            count = (labels != IGNORE_INDEX).sum()
            sums += torch.stack([engine(**inputs).loss.double() * count, count.double()])
        torch.distributed.all_reduce(sums)
        nats, count = sums.tolist()
        # Held-out bytes covered: sequences x seq_len tokens at the source's bytes per token.
        num_bytes = max(1, round(val.num_sequences * ctx.seq_len * val.bytes_per_token))
        summary = summarize_loss(nats, int(count), num_bytes).as_dict()
        if not causal:
            summary["bits_per_byte"] = None  # only some tokens are predicted: not a per-byte code length
        if ctx.rank == 0:
            log.info(format_eval_line(ctx.step, val.name, summary))
            ctx.metrics.write({"kind": "eval", "step": ctx.step, "domain": val.name, **summary})
    engine.train()


def save_checkpoint(ctx: Context) -> None:
    manifest_fp, tokenizer_fp = _fingerprints(ctx)
    state = ckpt.TrainerState(
        ctx.step, ctx.batches.consumed_samples, ctx.world_size, manifest_fp, tokenizer_fp
    )
    ckpt.save(ctx.engine, ctx.run_dir, state, ctx.rank, ctx.recipe.checkpoint.keep_last)


def _fingerprints(ctx: Context) -> tuple[str, str]:
    info = json.loads((ctx.run_dir / RUN_INFO).read_text(encoding="utf-8"))
    manifest = open_mix(info["mix_dir"])
    return manifest.fingerprint, manifest.tokenizer.fingerprint


def run(run_dir: Path) -> None:
    """The whole training of one rank: resume, step, log, eval, checkpoint, export."""
    ctx = build_context(run_dir)
    recipe = ctx.recipe
    _, info = load_run(run_dir)
    if info.get("export_only"):
        export(ctx)
        return
    val_sets = open_val_sets(open_mix(info["mix_dir"]), ctx.rank, ctx.world_size, recipe.eval.max_sequences)
    ctx.engine.train()
    pending: list[torch.Tensor] = []
    started, paused = time.perf_counter(), 0.0  # eval and checkpoint time stay out of tokens/s
    while ctx.step < ctx.max_steps:
        pending.append(train_step(ctx))
        ctx.step += 1
        last = ctx.step == ctx.max_steps
        if ctx.step % recipe.logging.every_steps == 0 or last:
            log_interval(ctx, pending, time.perf_counter() - started - paused)
            pending, started, paused = [], time.perf_counter(), 0.0
        pause_start = time.perf_counter()
        if val_sets and (ctx.step % recipe.eval.every_steps == 0 or last):
            evaluate(ctx, val_sets)
        if ctx.step % recipe.checkpoint.every_steps == 0 or last:
            save_checkpoint(ctx)
        paused += time.perf_counter() - pause_start
    if recipe.checkpoint.export_at_end:
        export(ctx)
    if ctx.metrics is not None:
        ctx.metrics.close()
    ds.barrier()


def export(ctx: Context) -> None:
    """The current weights (after resume: the latest checkpoint's) as an HF dir in <run dir>/export."""
    ctx.engine.module.config.use_cache = True  # generation wants the KV cache; training does not
    ckpt.export_hf(ctx.engine, ctx.tokenizer_dir, ctx.run_dir / "export", ctx.rank)
