"""Run dir (run_spec.json) -> one rank's training: steps, interval logs, evals, checkpoints, export.

Runs inside each process the launcher starts (domainlm.pretrain.worker). Everything the parent
resolved (seq_len, vocabulary, steps, accumulation, the DeepSpeed JSON) comes from the RunSpec and
is never recomputed here. The step has no host sync: losses stay on the device and are fetched (and
averaged over ranks) once per logging interval.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domainlm.errors import ConfigError, DataError
from domainlm.mix.dataset import SourceIds, train_dataset
from domainlm.mix.manifest import MixManifest, open_mix
from domainlm.pretrain import checkpoint as ckpt
from domainlm.pretrain import construct, elastic, heldout, preempt, speed
from domainlm.pretrain import engine as ds
from domainlm.pretrain.config import Recipe
from domainlm.pretrain.data import TrainBatches
from domainlm.pretrain.metrics import (
    MetricsWriter,
    SourceTracker,
    compute_throughput,
    eta_seconds,
    format_eval_line,
    format_train_line,
    model_flops_per_token,
    peak_flops_for,
)
from domainlm.pretrain.model import TokenIds, attention_shape, build_model, matmul_params
from domainlm.pretrain.objectives import Objective, build_objective, special_ids_from_tokenizer, token_losses
from domainlm.pretrain.spec import RunSpec, read_run_spec
from domainlm.pretrain.trackers import open_trackers
from domainlm.pretrain.vocab_init import prepare_vocabulary, rank_device

log = logging.getLogger("domainlm.pretrain")


@dataclass
class Context:
    """Everything one rank needs, built once before the first step."""

    spec: RunSpec
    recipe: Recipe
    run_dir: Path
    manifest: MixManifest
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
    source_ids: SourceIds | None = None  # per training sequence; None: a mix built before they existed
    source_sums: torch.Tensor | None = None  # [sources, 2]: this interval's nats and predicted tokens
    tracker: SourceTracker | None = None  # rank 0: tokens consumed per source so far
    skipped_logged: int = 0  # DeepSpeed's skipped-step count at the last log line


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


def token_ids(vocab_size: int, eos_token_id: int, tokenizer: Any) -> TokenIds:
    """What the model config needs: vocabulary and EOS as resolved (the run spec), pad and bos from the
    HF tokenizer (pad falls back to EOS)."""
    pad = tokenizer.pad_token_id
    return TokenIds(
        vocab_size=vocab_size,
        eos_token_id=eos_token_id,
        pad_token_id=pad if pad is not None else eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


def spec_token_ids(spec: RunSpec, tokenizer: Any) -> TokenIds:
    return token_ids(spec.vocab_size, spec.eos_token_id, tokenizer)


def prepare_model(
    recipe: Recipe, ids: TokenIds, seq_len: int, train_sequences: Any = None, device: str = "cpu"
) -> torch.nn.Module:
    """The recipe's model at `ids.vocab_size` rows (built or loaded, extended, checkpointing set);
    `train_sequences` (the mix's training set) is what new token rows are fitted on (vocab_init)."""
    model = build_model(recipe.model, ids, seq_len, recipe.train.seed)
    prepare_vocabulary(model, recipe.model, ids.vocab_size, fit_sequences=train_sequences,
                       micro_batch_size=recipe.train.micro_batch_size, device=device)  # fmt: skip
    speed.apply_model_switches(model, recipe)  # Liger kernels, full or selective checkpointing
    return model


def open_spec_mix(spec: RunSpec) -> MixManifest:
    """The run's mix, which must still be the one the parent resolved (it is read, never rebuilt, here)."""
    manifest = open_mix(spec.mix_dir)
    if manifest.fingerprint != spec.mix_fingerprint or manifest.seq_len != spec.seq_len:
        raise DataError(
            f"mix {spec.mix_dir}: changed since `domainlm pretrain` wrote {spec.run_dir / 'run_spec.json'} "
            f"(fingerprint {manifest.fingerprint[:12]} != {spec.mix_fingerprint[:12]}, seq_len "
            f"{manifest.seq_len} vs {spec.seq_len}); rerun `domainlm pretrain`"
        )
    return manifest


def build_context(run_dir: Path) -> Context:
    from transformers import AutoTokenizer

    spec = read_run_spec(run_dir)
    recipe, seq_len = spec.recipe, spec.seq_len
    rank, world_size = ds.init_distributed(spec.device)
    if world_size != spec.world_size:
        raise ConfigError(
            f"{run_dir}: the launcher started {world_size} ranks but the run spec is for {spec.world_size}; "
            "rerun `domainlm pretrain` with the same --num-gpus/--num-nodes"
        )
    setup_logging(run_dir, rank)
    set_determinism(recipe.train.seed, recipe.train.deterministic)
    manifest = open_spec_mix(spec)
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer_dir)  # special ids for the objective
    fit_on = rank_device(ds.accelerator_name())  # where new token rows are fitted (vocab_init)
    ids, sharded = spec_token_ids(spec, tokenizer), construct.applies(recipe)
    if sharded:  # ZeRO-3: each rank materializes only its partitions
        model = construct.build_sharded(recipe, ids, seq_len, spec.ds_config, rank)
    else:
        model = prepare_model(recipe, ids, seq_len, train_dataset(manifest), fit_on)
    construct.record(run_dir, rank, model, sharded)
    layers, hidden = attention_shape(model)
    per_token = model_flops_per_token(matmul_params(model), layers, hidden, seq_len)
    special = replace(special_ids_from_tokenizer(tokenizer), eos=spec.eos_token_id)
    objective = build_objective(
        recipe.objective.name,
        vocab_size=spec.vocab_size,
        special=special,
        seq_len=seq_len,
        seed=recipe.train.seed,
        mlm_probability=recipe.objective.mlm_probability,
        noise_density=recipe.objective.noise_density,
        mean_noise_span_length=recipe.objective.mean_span_length,
        document_masking=recipe.data.document_masking,
        attention=recipe.model.attention,
    )
    # Before initialize: loading a checkpoint saved on another rank count is an engine config flag.
    resume = ckpt.resume_point(run_dir, world_size, rank)
    ds_config = elastic.universal_config(spec.ds_config) if resume and resume.universal else spec.ds_config
    ds_config = speed.optimizer_params(ds_config, ds.accelerator_name())  # fused AdamW on CUDA
    engine = ds.initialize(model, ds_config, ds.build_scheduler_fn(recipe, spec.max_steps))
    if recipe.train.compile == "per_layer":
        speed.compile_layers(engine.module)
    elif recipe.train.compile:
        ds.compile_engine(engine)
    current = ckpt.TrainerState(0, 0, world_size, spec.mix_fingerprint, spec.tokenizer_fingerprint)
    step, consumed = _maybe_resume(engine, resume, current, rank, spec.force_resume, recipe.train.seed)
    device_name = torch.cuda.get_device_name() if ds.accelerator_name() == "cuda" else None
    metrics = None
    if rank == 0:
        metrics = MetricsWriter(run_dir / "metrics.jsonl", open_trackers(recipe, run_dir))
    ctx = Context(
        spec=spec,
        recipe=recipe,
        run_dir=run_dir,
        manifest=manifest,
        rank=rank,
        world_size=world_size,
        engine=engine,
        objective=objective,
        batches=TrainBatches(
            train_dataset(manifest), rank, world_size, recipe.train.micro_batch_size, consumed
        ),
        accumulation=spec.accumulation,
        max_steps=spec.max_steps,
        step=step,
        seq_len=seq_len,
        flops_per_token=per_token,
        peak_flops=peak_flops_for(device_name, recipe.train.precision),
        tokenizer_dir=spec.tokenizer_dir,
        metrics=metrics,
        skipped_logged=ds.skipped_steps(engine),
    )
    _track_sources(ctx, consumed)
    return ctx


def _track_sources(ctx: Context, consumed: int) -> None:
    """Per-source loss and tokens from the mix's per-sequence source ids (off, said once, without them)."""
    shards = ctx.manifest.train.shards
    if any(shard.source_ids_path is None for shard in shards):
        log.info("the mix has no per-sequence source ids (built before them): no per-source metrics")
        return
    ctx.source_ids = SourceIds(ctx.manifest)
    sources = ctx.manifest.sources
    ctx.source_sums = torch.zeros(len(sources), 2, dtype=torch.float64, device=ds.device_of(ctx.engine))
    if ctx.rank == 0:
        names, targets = [s.name for s in sources], [s.target_ratio for s in sources]
        ctx.tracker = SourceTracker(names, targets, ctx.source_ids, ctx.seq_len, consumed)


def _maybe_resume(
    engine: Any,
    resume: ckpt.ResumePoint | None,
    current: ckpt.TrainerState,
    rank: int,
    force: bool,
    seed: int,
) -> tuple[int, int]:
    """(step, consumed_samples) of the latest complete checkpoint, restored into the engine; (0, 0) if none."""
    if resume is None:
        return 0, 0
    path, state = resume.path, resume.state
    ckpt.check_resumable(state, current, path, force)
    ckpt.restore(engine, path, state, rank, seed, universal=resume.universal)
    how = f" (universal: saved on {state.world_size} ranks)" if resume.universal else ""
    log.info("resumed from %s%s: step %d, %d samples consumed", path, how, state.step, state.consumed_samples)
    return state.step, state.consumed_samples


def train_step(ctx: Context) -> torch.Tensor:
    """One optimizer step (accumulation micro-batches); returns the mean loss as a device tensor.

    The loss is computed here from the logits (the model's own mean over predicted tokens), kept per
    sequence so that each source's share of it adds up on the device with no host sync.
    """
    engine, device = ctx.engine, ds.device_of(ctx.engine)
    total = torch.zeros((), device=device)
    causal = ctx.objective.model_family == "causal"
    for micro in range(ctx.accumulation):
        indices = ctx.batches.global_indices() if ctx.source_ids is not None else None
        batch = ctx.batches.next().to(device, non_blocking=True)
        inputs = ctx.objective(batch, ctx.step * ctx.accumulation + micro, ctx.rank)
        labels = inputs.pop("labels")
        nll, scored = token_losses(engine(**inputs).logits, labels, causal)
        loss = nll.sum() / scored.sum()
        engine.backward(loss)
        engine.step()
        total += loss.detach().float()
        if indices is not None:
            rows = batch.shape[0]  # a flattened [1, B*T] causal batch is B sequences again here
            per_row = torch.stack([nll.detach().view(rows, -1).sum(1), scored.view(rows, -1).sum(1)], 1)
            sources = torch.from_numpy(ctx.source_ids[indices].astype(np.int64)).to(device, non_blocking=True)
            ctx.source_sums.index_add_(0, sources, per_row.double())
    return total / ctx.accumulation


def _all_sum(values: torch.Tensor) -> list[float]:
    """Sum a small tensor over ranks and fetch it: the one host sync of a logging interval."""
    values = values.detach().double().clone()
    torch.distributed.all_reduce(values)
    return values.cpu().tolist()


def log_interval(ctx: Context, losses: list[torch.Tensor], seconds: float) -> None:
    steps = len(losses)
    sums = torch.stack(losses).double()
    if ctx.source_sums is not None:  # one all-reduce for the losses and the per-source sums together
        sums = torch.cat([sums, ctx.source_sums.T.reshape(-1)])
        ctx.source_sums.zero_()
    summed = _all_sum(sums)
    step_losses = [value / ctx.world_size for value in summed[:steps]]
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
        **_numerics(ctx),
    }
    if ctx.tracker is not None:
        ctx.tracker.advance(ctx.batches.consumed_samples)
        num = len(ctx.tracker.names)
        record["sources"] = ctx.tracker.record(summed[steps : steps + num], summed[steps + num :])
    if ctx.rank == 0:
        log.info(format_train_line(record))
        ctx.metrics.write(record)


def _numerics(ctx: Context) -> dict[str, Any]:
    """Steps DeepSpeed skipped on overflow (this interval, in all) and the interval's peak memory."""
    total = ds.skipped_steps(ctx.engine)
    skipped, ctx.skipped_logged = total - ctx.skipped_logged, total
    return {
        "skipped_steps": skipped,
        "skipped_steps_total": total,
        "peak_memory_gib": ds.peak_memory_bytes() / 2**30,
    }


def evaluate(ctx: Context, val_sets: list) -> None:
    """Loss / perplexity / bits per byte on each source's held-out set, all rows over all ranks."""
    ctx.engine.eval()
    micro = ctx.recipe.eval.micro_batch_size or ctx.recipe.train.micro_batch_size
    pad = ctx.spec.eos_token_id
    summaries = heldout.evaluate_sets(
        ctx.engine, ctx.objective, val_sets, ctx.rank, ctx.world_size, micro, pad
    )
    if ctx.rank == 0:
        for summary in summaries:
            log.info(format_eval_line(ctx.step, summary["domain"], summary))
            ctx.metrics.write({"kind": "eval", "step": ctx.step, **summary})
    ctx.engine.train()


def save_checkpoint(ctx: Context) -> None:
    spec = ctx.spec
    state = ckpt.TrainerState(
        ctx.step,
        ctx.batches.consumed_samples,
        ctx.world_size,
        spec.mix_fingerprint,
        spec.tokenizer_fingerprint,
        spec.global_batch_sequences,
    )
    ckpt.save(ctx.engine, ctx.run_dir, state, ctx.rank, ctx.recipe.checkpoint.keep_last)


def run(run_dir: Path) -> None:
    """The whole training of one rank: resume, step, log, eval, checkpoint, export."""
    ctx = build_context(run_dir)
    recipe = ctx.recipe
    if ctx.spec.export_only:
        export(ctx)
        return
    val_sets = heldout.open_val_sets(
        ctx.manifest, ctx.tokenizer_dir, ctx.objective, recipe.eval.max_sequences
    )
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
        checkpointed = ctx.step % recipe.checkpoint.every_steps == 0 or last
        if checkpointed:
            save_checkpoint(ctx)
        if not last and preempt.should_stop(ctx.step, recipe.logging.every_steps, ds.device_of(ctx.engine)):
            _stop_preempted(ctx, checkpointed)
        paused += time.perf_counter() - pause_start
    if recipe.checkpoint.export_at_end:
        export(ctx)
    if ctx.metrics is not None:
        ctx.metrics.close()
    skipped = ds.skipped_steps(ctx.engine)
    if ctx.rank == 0:
        log.info("done: %d optimizer steps, %d skipped by DeepSpeed's overflow check", ctx.step, skipped)
    ds.barrier()


def _stop_preempted(ctx: Context, checkpointed: bool) -> None:
    """A rank got SIGUSR1 (domainlm.pretrain.preempt): checkpoint this step on every rank, then exit."""
    if not checkpointed:
        save_checkpoint(ctx)
    preempt.mark(ctx.run_dir, ctx.rank, ctx.step)
    if ctx.metrics is not None:
        ctx.metrics.close()
    raise SystemExit(preempt.PREEMPTED_EXIT)


def export(ctx: Context) -> None:
    """The current weights (after resume: the latest checkpoint's) as an HF dir in <run dir>/export."""
    ctx.engine.module.config.use_cache = True  # generation wants the KV cache; training does not
    ckpt.export_hf(ctx.engine, ctx.tokenizer_dir, ctx.run_dir / "export", ctx.rank)
