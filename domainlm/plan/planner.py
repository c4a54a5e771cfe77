"""`PlanInputs` -> `Plan`: sizing, data, compute and time, shape, memory per GPU, and a recommendation.

Resolution order: a compute budget (--flops, or GPUs x peak x hours x MFU) and/or a model size
(--params or a shape) and/or a token count, each filling in what is missing; inputs that are given
twice must agree within `AGREE_TOLERANCE`. See `make_plan`.
"""

from __future__ import annotations

from domainlm.errors import ConfigError
from domainlm.mix.manifest import MixManifest, open_mix
from domainlm.plan import flops as fl
from domainlm.plan.hardware import GpuSpec, check_trainable, get_gpu, load_catalog
from domainlm.plan.inputs import DataSource, PlanInputs, validate_inputs
from domainlm.plan.recommend import recommend
from domainlm.plan.result import ComputePlan, DataPlan, Plan, Sizing, SourcePlan
from domainlm.plan.scaling import (
    FITS,
    ScalingFit,
    constrained_loss,
    data_constrained_optimum,
    effective_tokens,
    params_for_tokens,
    rule_of_thumb,
)
from domainlm.plan.shapes import ModelShape, llama_shape_for, make_shape
from domainlm.units import human_count

AGREE_TOLERANCE = 0.05  # over-determined inputs may differ by this much (rounding in what users type)
DEFAULT_MFU = 0.4  # typical of well-tuned dense training on A100/H100 (BloombergGPT ~0.33, PaLM 0.46)
DEFAULT_SEQ_LEN = 2048
DEFAULT_VOCAB = 32_000  # Llama's
MEMORY_GPUS_IF_UNKNOWN = 8  # one node, for the memory table when --gpus is not given


def _differ(a: float, b: float) -> bool:
    return abs(a / b - 1.0) > AGREE_TOLERANCE


def _hardware(inputs: PlanInputs) -> tuple[GpuSpec | None, float | None]:
    """The GPU and its dense peak at the training precision (fp16/bf16 run on tensor cores)."""
    if inputs.gpu_type is None:
        return None, None
    gpu = get_gpu(inputs.gpu_type, load_catalog(inputs.gpu_catalog))
    peak = gpu.peak(inputs.precision)
    if peak is None:
        raise ConfigError(
            f"--precision {inputs.precision}: {gpu.name} has no {inputs.precision} peak in the catalog; "
            f"use --precision {' or '.join(sorted(gpu.peak_flops))}"
        )
    return gpu, peak


def _budget(inputs: PlanInputs, peak: float | None, mfu: float) -> tuple[float | None, float | None]:
    """(budget FLOPs, of which from hardware) — --flops and --gpus x --hours must agree if both given."""
    hw = None
    if inputs.hours is not None and peak is not None and inputs.num_gpus:
        hw = fl.budget_flops(inputs.num_gpus, peak, inputs.hours, mfu)
    if inputs.flops is not None and hw is not None and _differ(inputs.flops, hw):
        raise ConfigError(
            f"--flops {inputs.flops:.3g} disagrees with --gpus {inputs.num_gpus} x --gpu-type "
            f"{inputs.gpu_type} x --hours {inputs.hours:g} x --mfu {mfu:g} = {hw:.3g} FLOPs; give one of them"
        )
    return (inputs.flops if inputs.flops is not None else hw), hw


def _target_params(inputs: PlanInputs, budget: float | None, unique: float | None, fit: ScalingFit):
    """(N target, chosen_by): given, or the fit's optimum (data-constrained if unique data is short)."""
    if inputs.params is not None:
        return inputs.params, "--params"
    if budget is not None and inputs.tokens is not None:
        return budget / (6.0 * inputs.tokens), "budget / --tokens"
    if budget is not None:
        n_opt, d_opt = fit.optimum(budget)
        if unique is not None and d_opt > unique:
            return data_constrained_optimum(budget, unique, fit)[0], f"{fit.name} fit, data-constrained"
        return n_opt, f"{fit.name} fit optimum"
    if inputs.tokens is not None:
        return params_for_tokens(inputs.tokens, fit), f"{fit.name} fit: compute-optimal for --tokens"
    raise ConfigError(
        "nothing to plan from: give a budget (--flops, or --gpus/--gpu-type/--hours), a model size "
        "(--params, or --layers/--hidden/--heads), or --tokens"
    )


def _build_shape(inputs: PlanInputs, target: float | None, vocab: int, seq_len: int) -> ModelShape:
    spec = inputs.shape
    if spec is not None:
        shape = make_shape(
            inputs.arch, spec.num_layers, spec.hidden_size, spec.num_heads, vocab,
            num_kv_heads=spec.num_kv_heads, ffn_size=spec.ffn_size,
            tie_embeddings=spec.tie_embeddings, max_positions=seq_len,
        )  # fmt: skip
        if inputs.params is not None and _differ(shape.num_params, inputs.params):
            raise ConfigError(
                f"--params {inputs.params:.4g} disagrees with the shape given by --layers/--hidden/--heads, "
                f"which has {shape.num_params:,} parameters; give one of them"
            )
        return shape
    smallest = make_shape("llama", 1, 128, 2, vocab)
    if target < smallest.num_params:
        raise ConfigError(
            f"the budget affords a ~{target:.3g}-parameter model, smaller than the smallest model with a "
            f"{vocab:,}-token vocabulary ({smallest.num_params:,}); raise --flops/--hours/--gpus or lower --vocab"
        )
    return llama_shape_for(target, vocab)


def _fill_hours(
    inputs: PlanInputs, shape: ModelShape, hw_flops: float, vocab: int, seq_len: int
) -> ModelShape:
    """Resize so --tokens at the exact per-token FLOPs (attention included) fill the hours; 6ND alone
    would overshoot them by the attention share (12·L·H·T / 6N, large at long sequences)."""
    target = float(shape.num_params)
    for _ in range(8):  # per-token FLOPs grow ~linearly in N, so a few rescalings converge
        per_token = fl.flops_per_token(shape.matmul_params, shape.num_layers, shape.hidden_size, seq_len)
        ratio = hw_flops / (inputs.tokens * per_token)
        if abs(ratio - 1.0) < 0.01:
            break
        target *= ratio
        shape = _build_shape(inputs, target, vocab, seq_len)
    return shape


def _tokens(inputs: PlanInputs, shape: ModelShape, per_token: float, budget, hw_flops, fit) -> float:
    """Given, or what fills the hours (exact FLOPs), or C / 6N, or the fit's optimum for N."""
    n = shape.num_params
    if inputs.tokens is not None:
        if hw_flops is not None and inputs.tokens * per_token > hw_flops * (1 + AGREE_TOLERANCE):
            need = inputs.tokens * per_token / hw_flops * inputs.hours
            raise ConfigError(
                f"--tokens {inputs.tokens:.3g} on this model needs {need:,.0f} hours, more than --hours "
                f"{inputs.hours:g}; lower --tokens/--params or raise --hours/--gpus"
            )
        claimed = inputs.params if inputs.params is not None else n  # the user's number, if typed
        if inputs.flops is not None and _differ(6 * claimed * inputs.tokens, inputs.flops):
            _contradiction(inputs, claimed)
        return inputs.tokens
    if hw_flops is not None and inputs.flops is None:
        return hw_flops / per_token
    if budget is not None:
        return budget / (6.0 * n)
    return fit.tokens_for_params(n)


def _contradiction(inputs: PlanInputs, n: float) -> None:
    """--flops, the model size and --tokens all given, and C = 6ND does not hold between them."""
    need = 6 * n * inputs.tokens
    size = f"--params {inputs.params:.3g}" if inputs.params is not None else f"the shape's {n:.3g} params"
    side = "more" if need > inputs.flops else "less"
    raise ConfigError(
        f"--flops {inputs.flops:.3g}, {size} and --tokens {inputs.tokens:.3g} disagree: training "
        f"{n:.3g} params on {inputs.tokens:.3g} tokens needs 6ND = {need:.3g} FLOPs, {side} than --flops "
        f"{inputs.flops:.3g} (beyond {AGREE_TOLERANCE:.0%}); give two of the three and the plan derives "
        f"the third (--tokens {inputs.flops / (6 * n):.3g} fits this budget and size)"
    )


def _data_plan(sources: tuple[DataSource, ...], tokens: float, flops: float, fit: ScalingFit) -> DataPlan:
    unique = sum(s.available_tokens for s in sources)
    plans = []
    for s in sources:
        ratio = s.ratio if s.ratio is not None else s.available_tokens / unique
        need = ratio * tokens
        eff = effective_tokens(need, s.available_tokens)
        plans.append(SourcePlan(s.name, s.available_tokens, ratio, need, need / s.available_tokens, eff))
    best_n, best_d = data_constrained_optimum(flops, unique, fit)
    return DataPlan(
        unique_tokens=unique,
        tokens=tokens,
        epochs=tokens / unique,
        effective_tokens=sum(p.effective_tokens for p in plans),
        short_of_rule=unique < rule_of_thumb(flops)[1],
        short_of_fit=unique < fit.optimum(flops)[1],
        best_params=best_n,
        best_tokens=best_d,
        best_epochs=best_d / unique,
        one_epoch_params=flops / (6.0 * unique),
        sources=plans,
    )


def _sources(inputs: PlanInputs) -> tuple[tuple[DataSource, ...], MixManifest | None]:
    if inputs.mix_dir is None:
        return inputs.sources, None
    if inputs.sources:
        raise ConfigError("give --mix or --domain-tokens/--general-tokens, not both")
    mix = open_mix(inputs.mix_dir)
    sources = tuple(DataSource(s.name, float(s.available_tokens), s.target_ratio) for s in mix.sources)
    return sources, mix


def agree_with_mix(flag: str, given: int | None, key: str, mix: MixManifest | None) -> int | None:
    """A value the mix fixes (its sequences were packed, its ids written with it): a flag may only repeat it."""
    if mix is None:
        return given
    value = getattr(mix, key)
    if given is not None and given != value:
        raise ConfigError(
            f"{flag} {given} (flag) disagrees with {key} {value} of the mix ({mix.path}); drop {flag} "
            f"to plan for the mix, or plan with a mix built with {key} {given}"
        )
    return value


def make_plan(inputs: PlanInputs) -> Plan:
    """The planner's entry point (module API): validated inputs -> a complete Plan."""
    validate_inputs(inputs)
    sources, mix = _sources(inputs)
    seq_len = agree_with_mix("--seq-len", inputs.seq_len, "seq_len", mix) or DEFAULT_SEQ_LEN
    vocab = agree_with_mix("--vocab", inputs.vocab_size, "vocab_size", mix) or DEFAULT_VOCAB
    fit = FITS[inputs.fit]
    gpu, peak = _hardware(inputs)
    mfu = inputs.mfu if inputs.mfu is not None else DEFAULT_MFU
    budget, hw_flops = _budget(inputs, peak, mfu)
    unique = sum(s.available_tokens for s in sources) if sources else None

    target, chosen_by = (None, "shape flags") if inputs.shape else _target_params(inputs, budget, unique, fit)
    catalog = load_catalog(inputs.gpu_catalog)  # also when no --gpu-type uses it: a bad file is an error
    if target is not None:  # before a shape is built: 1e30 parameters would make a 1e20-layer model
        where = f"--params {inputs.params:.3g}" if inputs.params is not None else f"the {chosen_by}"
        where += f" for {budget:.3g} FLOPs" if budget is not None and inputs.params is None else ""
        check_trainable(target, where, catalog)
    shape = _build_shape(inputs, target, vocab, seq_len)
    if target is None:
        check_trainable(shape.num_params, "--layers/--hidden/--heads", catalog)
    if chosen_by == "budget / --tokens" and hw_flops is not None and inputs.flops is None:
        shape = _fill_hours(inputs, shape, hw_flops, vocab, seq_len)
    n = shape.num_params
    per_token = fl.flops_per_token(shape.matmul_params, shape.num_layers, shape.hidden_size, seq_len)
    tokens = _tokens(inputs, shape, per_token, budget, hw_flops, fit)
    flops = budget if budget is not None else fl.approx_training_flops(n, tokens)

    data = _data_plan(sources, tokens, flops, fit) if sources else None
    sizing = _sizing(flops, chosen_by, target or n, n, tokens, fit, unique)
    compute = _compute(inputs, gpu, peak, mfu, shape, tokens, per_token, seq_len)
    notes = _notes(inputs, data, compute, sizing)
    num_gpus = inputs.num_gpus or MEMORY_GPUS_IF_UNKNOWN
    if inputs.num_gpus is None:
        notes.append(f"memory per GPU assumes {MEMORY_GPUS_IF_UNKNOWN} GPUs (one node); pass --gpus")
    rec, table = recommend(inputs, shape, seq_len, tokens, num_gpus, gpu, peak, mfu, per_token)
    if rec is not None:
        notes.extend(rec.notes)
    return Plan(
        sizing=sizing,
        data=data,
        compute=compute,
        shape=shape,
        seq_len=seq_len,
        precision=inputs.precision,
        memory=table,
        recommendation=rec,
        gpu_memory_bytes=gpu.memory_bytes if gpu else None,
        teaching=_teaching(n),
        notes=notes,
    )


def _sizing(flops, chosen_by, target, n, tokens, fit: ScalingFit, unique) -> Sizing:
    rule_n, rule_d = rule_of_thumb(flops)
    fit_n, fit_d = fit.optimum(flops)
    other = next(f for f in FITS.values() if f.name != fit.name)
    other_n, other_d = other.optimum(flops)
    loss = constrained_loss(n, tokens, unique, fit) if unique else fit.loss(n, tokens)
    return Sizing(
        flops=flops, chosen_by=chosen_by, target_params=target, params=n, tokens=tokens,
        tokens_per_param=tokens / n, rule_params=rule_n, rule_tokens=rule_d, fit=fit.name,
        fit_source=fit.source, fit_params=fit_n, fit_tokens=fit_d, other_fit=other.name,
        other_fit_params=other_n, other_fit_tokens=other_d, predicted_loss=loss,
    )  # fmt: skip


def _compute(
    inputs: PlanInputs, gpu, peak, mfu, shape: ModelShape, tokens, per_token, seq_len
) -> ComputePlan:
    total = tokens * per_token
    gpu_hours = total / (peak * mfu) / 3600.0 if peak else None
    days = gpu_hours / inputs.num_gpus / 24.0 if gpu_hours and inputs.num_gpus else None
    cost = gpu_hours * inputs.price_per_gpu_hour if gpu_hours and inputs.price_per_gpu_hour else None
    return ComputePlan(
        flops_6nd=fl.approx_training_flops(shape.num_params, tokens),
        flops_per_token=per_token,
        flops=total,
        attention_share=12.0 * shape.num_layers * shape.hidden_size * seq_len / per_token,
        pflops_days=fl.pflops_days(total),
        gpu_type=gpu.name if gpu else None,
        num_gpus=inputs.num_gpus,
        peak_flops=peak,
        mfu=mfu,
        mfu_assumed=inputs.mfu is None,
        gpu_hours=gpu_hours,
        days=days,
        budget_hours=inputs.hours,
        cost=cost,
    )


# Muennighoff et al. 2023: up to ~4 epochs, repeated tokens are worth almost as much as new ones;
# by ~16 epochs extra repeats are worth next to nothing.
EPOCHS_GOOD, EPOCHS_FUTILE = 4.0, 16.0


# The ranges the Chinchilla fits were made on (Hoffmann et al. 2022: 70M-16B parameters,
# 5B-500B tokens); the loss formula outside them is an extrapolation.
FIT_PARAMS_RANGE = (7e7, 1.6e10)
FIT_TOKENS_RANGE = (5e9, 5e11)


def _notes(inputs: PlanInputs, data: DataPlan | None, compute: ComputePlan, sizing: Sizing) -> list[str]:
    notes = []
    if compute.mfu_assumed and compute.peak_flops:
        notes.append(f"MFU {DEFAULT_MFU:g} assumed (typical of tuned dense training); set --mfu")
    (n_lo, n_hi), (d_lo, d_hi) = FIT_PARAMS_RANGE, FIT_TOKENS_RANGE
    if not (n_lo <= sizing.params <= n_hi and d_lo <= sizing.tokens <= d_hi):
        notes.append(
            f"{human_count(sizing.params)} params / {human_count(sizing.tokens)} tokens is outside the range the "
            "scaling fits were made on (70M-16B params, 5B-500B tokens): the predicted loss is an extrapolation"
        )
    if data is None:
        return notes
    if data.short_of_rule or data.short_of_fit:
        notes.append(
            f"data-constrained: {human_count(data.unique_tokens)} unique tokens < the compute-optimal "
            f"{human_count(sizing.rule_tokens)} (20 tokens/param) / {human_count(sizing.fit_tokens)} ({sizing.fit}) at "
            f"{sizing.flops:.3g} FLOPs; best for this data: {human_count(data.best_params)} params on "
            f"{human_count(data.best_tokens)} tokens ({data.best_epochs:.2f} epochs)"
        )
    for source in data.sources:
        if source.epochs > EPOCHS_FUTILE:
            notes.append(
                f"source {source.name!r} is repeated {source.epochs:.1f} times: beyond ~{EPOCHS_FUTILE:g} "
                "epochs repeats add almost nothing (Muennighoff et al. 2023); add data or lower its ratio"
            )
        elif source.epochs > EPOCHS_GOOD:
            notes.append(
                f"source {source.name!r} is repeated {source.epochs:.1f} times: past ~{EPOCHS_GOOD:g} epochs "
                f"each repeat is worth less (effective {human_count(source.effective_tokens)} of {human_count(source.tokens)} tokens)"
            )
    return notes


def _teaching(num_params: int) -> dict[str, float]:
    """The rules of thumb, for this model: 4 bytes/param fp32 weights; 16 (to ~24) bytes/param to train."""
    return {
        "weights_fp32_bytes": 4.0 * num_params,  # 1B parameters = 4 GB
        "weights_bf16_bytes": 2.0 * num_params,
        # Adam, mixed precision: 2 (weights) + 2 (grads) + 12 (fp32 master, momentum, variance);
        # fp32 gradient accumulation buffers and temporaries add up to ~8 more in practice.
        "train_states_bytes_per_param": 16.0,
        "train_states_bytes": 16.0 * num_params,
        "train_upper_bytes_per_param": 24.0,
        "train_upper_bytes": 24.0 * num_params,
    }
