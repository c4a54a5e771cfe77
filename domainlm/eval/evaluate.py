"""Models x domains -> an EvalReport (loss, perplexity, bits per byte per model and domain).

Python entry point: `evaluate(["trained=runs/x/export", "init=runs/x/init"], load_domains([mix_dir]))`.
Every model and setting is validated (configs and tokenizers loaded) before any weights are;
then models are evaluated one at a time so only one is in memory. Held-out text is tokenized by
the fastest encoder proved to give the tokenizer's own ids (encoding.py); the report names it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from domainlm.errors import ConfigError
from domainlm.eval.data import EvalDomain
from domainlm.eval.encoding import TextIds, text_encoder
from domainlm.eval.models import (
    DEVICES,
    DTYPES,
    ModelInfo,
    ModelSpec,
    inspect_model,
    load_weights,
    parse_model_specs,
    resolve_device,
    resolve_dtype,
)
from domainlm.eval.report import DomainEntry, EvalReport, EvalResult, ModelEntry
from domainlm.losses import summarize_loss

logger = logging.getLogger(__name__)

# Default window when --max-length is not given: the model's context, but at most this many tokens
# (a 128k-context model would otherwise get 128k-token windows).
DEFAULT_MAX_LENGTH_CAP = 2048
_PROBE_DOCS = 8  # held-out documents on which the fast encoder must also give the tokenizer's ids


@dataclass(frozen=True)
class EvalSettings:
    """How to evaluate; every field maps to the CLI flag named in its error message."""

    batch_size: int = 8  # windows (rows) per forward pass
    max_length: int | None = None  # tokens per window; None: the model's context, at most 2048
    stride: int | None = None  # causal only: new tokens scored per window; None: max_length // 2
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto (float32 on CPU, bf16 on GPU) | float32 | bfloat16 | float16
    seed: int = 0  # masking / span corruption of masked and seq2seq models
    fast_encode: bool = True  # Python API only: False tokenizes with the tokenizer's own call (same ids)

    def validate(self) -> None:
        problems = []
        if self.batch_size < 1:
            problems.append(f"--batch-size {self.batch_size}: must be at least 1")
        if self.max_length is not None and self.max_length < 2:
            problems.append(
                f"--max-length {self.max_length}: must be at least 2 (one context + one target token)"
            )
        if self.stride is not None and self.stride < 1:
            problems.append(f"--stride {self.stride}: must be at least 1")
        if self.stride is not None and self.max_length is not None and self.stride >= self.max_length:
            problems.append(
                f"--stride {self.stride}: must be below --max-length {self.max_length} so that each "
                "window keeps max_length - stride tokens of context; e.g. half of it"
            )
        if self.device not in DEVICES:
            problems.append(f"--device {self.device!r}: choose one of {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            problems.append(f"--dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.seed < 0:
            problems.append(f"--seed {self.seed}: must be >= 0")
        if problems:
            raise ConfigError("; ".join(problems))


def window_lengths(settings: EvalSettings, info: ModelInfo) -> tuple[int, int | None]:
    """(max_length, stride) for one model: the requested window, or its context capped at 2048.

    A requested window longer than the model's context is an error, not a silent cap: the report
    would otherwise say one window length and measure another.
    """
    if settings.max_length is not None and settings.max_length > info.context_length:
        raise ConfigError(
            f"--max-length {settings.max_length}: model {info.spec.name!r} ({info.spec.path}) has a "
            f"{info.context_length}-token context; use --max-length {info.context_length} or less, "
            "or leave it out to use the context"
        )
    max_length = min(settings.max_length or DEFAULT_MAX_LENGTH_CAP, info.context_length)
    if info.kind != "causal":
        return max_length, None
    stride = settings.stride if settings.stride is not None else max(1, max_length // 2)
    if stride >= max_length:
        raise ConfigError(
            f"--stride {stride}: model {info.spec.name!r} has a {max_length}-token window (its context), so "
            f"the stride must be below that; use --stride {max_length // 2} or less"
        )
    return max_length, stride


def build_rows(
    info: ModelInfo,
    texts: tuple[str, ...],
    max_length: int,
    stride: int | None,
    seed: int,
    encoder: TextIds | None = None,
):
    """The RowPlan of this model's objective (imports deferred: torch is slow to import)."""
    if info.kind == "causal":
        from domainlm.eval.perplexity import causal_rows

        return causal_rows(info.tokenizer, texts, max_length, stride, encoder)
    from domainlm.eval import denoising

    if info.kind == "masked":
        return denoising.masked_rows(info.tokenizer, texts, max_length, seed, encoder)
    start = info.config.decoder_start_token_id
    start = info.tokenizer.pad_token_id if start is None else start
    return denoising.seq2seq_rows(info.tokenizer, texts, max_length, seed, int(start or 0), encoder)


def pad_id(tokenizer: Any) -> int:
    """Any valid id works for padding (padded positions are masked out of attention and loss)."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


def _evaluate_model(
    info, lengths, domains, settings, device, dtype, progress
) -> tuple[ModelEntry, list[EvalResult]]:
    from domainlm.eval.scoring import batch_rows, score_batches

    max_length, stride = lengths
    probes = [text for domain in domains for text in domain.texts[:_PROBE_DOCS]][:_PROBE_DOCS]
    encoder = text_encoder(info.tokenizer, probes, settings.fast_encode)
    model = load_weights(info, device, dtype)
    entry = ModelEntry.describe(info, model, max_length, stride, settings.seed)
    entry = dataclasses.replace(entry, encoder=encoder.name)
    results = []
    for domain in domains:
        plan = build_rows(info, domain.texts, max_length, stride, settings.seed, encoder)
        batches = batch_rows(plan.rows, settings.batch_size)
        on_batch = None
        if progress is not None:
            task = progress.add_task(f"{info.spec.name} · {domain.name}", total=len(batches))
            on_batch = functools.partial(progress.advance, task)
        started = time.perf_counter()
        nll = score_batches(model, batches, pad_id(info.tokenizer), device, on_batch)
        seconds = time.perf_counter() - started
        summary = summarize_loss(nll, plan.num_tokens, domain.num_bytes)
        logger.info(
            "%s on %s: %.4f bits/byte, loss %.4f (%d tokens, %.0f tokens/s)",
            info.spec.name, domain.name, summary.bits_per_byte, summary.loss, plan.num_tokens,
            plan.num_tokens / max(seconds, 1e-9),
        )  # fmt: skip
        results.append(
            EvalResult(
                model=info.spec.name, domain=domain.name, num_unscored=plan.num_unscored, **asdict(summary)
            )
        )
    return entry, results


def evaluate(
    models: list[str] | list[ModelSpec],
    domains: list[EvalDomain],
    settings: EvalSettings | None = None,
    progress: Any | None = None,
) -> EvalReport:
    """Evaluate every model on every domain. `models` are `DIR` / `NAME=DIR` strings or ModelSpecs.

    `progress` is an optional started rich Progress (one task per model and domain).
    """
    settings = settings or EvalSettings()
    settings.validate()
    specs = parse_model_specs(list(models)) if models and isinstance(models[0], str) else list(models)
    if not specs:
        raise ConfigError("--model: give at least one local model directory (DIR or NAME=DIR)")
    if not domains:
        raise ConfigError("--data: give at least one mix directory, corpus path or shipped sample name")
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    infos = [inspect_model(spec) for spec in specs]
    lengths = [window_lengths(settings, info) for info in infos]
    entries, results = [], []
    for info, model_lengths in zip(infos, lengths, strict=True):
        entry, model_results = _evaluate_model(
            info, model_lengths, domains, settings, device, dtype, progress
        )
        entries.append(entry)
        results.extend(model_results)
    domain_entries = [DomainEntry(d.name, d.source, d.num_documents, d.num_bytes) for d in domains]
    run_settings = {
        "batch_size": settings.batch_size,
        "device": device.type,
        "dtype": str(dtype).removeprefix("torch."),
        "seed": settings.seed,
    }
    return EvalReport(models=entries, domains=domain_entries, results=results, settings=run_settings)
