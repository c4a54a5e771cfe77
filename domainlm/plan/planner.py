"""`PlanInputs` -> `Plan`: sizing, data, compute and time, shape, memory per GPU, and a recommendation.

Resolution order: a compute budget (--flops, or GPUs x peak x hours x MFU/HFU) and/or a model size
(--params or a shape) and/or a token count, each filling in what is missing; inputs that are given
twice must agree within `AGREE_TOLERANCE`. See `make_plan`.

Budgets are spent with the FLOPs the plan charges: --flops buys tokens at 6N + 12·L·H·T per token
(attention included, so the plan never overspends it: C = 6ND only sizes N), and --hours buys tokens
at the FLOPs the utilization counts (model FLOPs with --mfu, hardware FLOPs with recompute with
--hfu or the assumed HFU).
"""

from __future__ import annotations

from dataclasses import replace

from domainlm.errors import ConfigError
from domainlm.mix.manifest import MixManifest, open_mix
from domainlm.plan import flops as fl
from domainlm.plan.hardware import GpuSpec, check_trainable, get_gpu, load_catalog
from domainlm.plan.inputs import DataSource, PlanInputs, validate_inputs
from domainlm.plan.memory import rule_of_thumb_bytes
from domainlm.plan.parallel import megatron_plan
from domainlm.plan.recommend import recommend, resolve_recompute
from domainlm.plan.result import Plan
from domainlm.plan.scaling import (
    FITS,
    Fit,
    data_constrained_optimum,
    data_constrained_validity,
    loss_fit,
    params_for_tokens,
)
from domainlm.plan.sections import compute_section, data_plan, plan_flags, plan_notes, sizing_section
from domainlm.plan.shapes import ModelShape, llama_shape_for, make_shape, pin_params

AGREE_TOLERANCE = 0.05  # over-determined inputs may differ by this much (rounding in what users type)
# Hardware FLOPs utilization typical of well-tuned dense training on A100/H100 (PaLM: 46% MFU, 57.8%
# HFU; BloombergGPT ~0.33); assumed as HFU so that recompute costs time.
DEFAULT_HFU = 0.4
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


def _utilization(inputs: PlanInputs) -> fl.Utilization:
    if inputs.mfu is not None:
        return fl.Utilization("mfu", inputs.mfu)
    if inputs.hfu is not None:
        return fl.Utilization("hfu", inputs.hfu)
    return fl.Utilization("assumed", DEFAULT_HFU)


def _budget(
    inputs: PlanInputs, peak: float | None, util: fl.Utilization
) -> tuple[float | None, float | None]:
    """(budget FLOPs, of which from hardware) — --flops and --gpus x --hours must agree if both given.
    The hardware budget counts the FLOPs the utilization counts (model with --mfu, hardware with HFU)."""
    hw = None
    if inputs.hours is not None and peak is not None and inputs.num_gpus:
        hw = fl.budget_flops(inputs.num_gpus, peak, inputs.hours, util.value)
    if inputs.flops is not None and hw is not None and _differ(inputs.flops, hw):
        flag = "--mfu" if util.kind == "mfu" else "--hfu"
        raise ConfigError(
            f"--flops {inputs.flops:.3g} disagrees with --gpus {inputs.num_gpus} x --gpu-type "
            f"{inputs.gpu_type} x --hours {inputs.hours:g} x {flag} {util.value:g} = {hw:.3g} FLOPs; give one of them"
        )
    return (inputs.flops if inputs.flops is not None else hw), hw


def _target_params(inputs: PlanInputs, budget: float | None, unique: float | None, fit: Fit):
    """(N target, chosen_by): given, or the fit's optimum (data-constrained if unique data is short and
    the data-constrained fit holds there; outside its validity the unconstrained optimum, said so)."""
    if inputs.params is not None:
        return inputs.params, "--params"
    if budget is not None and inputs.tokens is not None:
        return budget / (6.0 * inputs.tokens), "budget / --tokens"
    if budget is not None:
        n_opt, d_opt = fit.optimum(budget)
        if unique is not None and d_opt > unique:
            n_dc, d_dc = data_constrained_optimum(budget, unique, loss_fit(fit))
            if not data_constrained_validity(n_dc, d_dc, unique):
                return n_dc, f"{loss_fit(fit).name} fit, data-constrained"
            return n_opt, f"{fit.name} fit optimum (the data-constrained fit does not hold here)"
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
        return shape if inputs.params is None else pin_params(shape, inputs.params)
    smallest = make_shape("llama", 1, 128, 2, vocab)
    if target < smallest.num_params:
        raise ConfigError(
            f"the budget affords a ~{target:.3g}-parameter model, smaller than the smallest model with a "
            f"{vocab:,}-token vocabulary ({smallest.num_params:,}); raise --flops/--hours/--gpus or lower --vocab"
        )
    shape = llama_shape_for(target, vocab)
    # --params N is used exactly for FLOPs and memory; the shape illustrates it (ZeRO paper's 7.5B).
    return shape if inputs.params is None else pin_params(shape, inputs.params)


def _model_per_token(shape: ModelShape, seq_len: int) -> float:
    return fl.flops_per_token(shape.matmul_params, shape.num_layers, shape.hidden_size, seq_len)


def _charged_per_token(inputs: PlanInputs, shape: ModelShape, seq_len: int, util: fl.Utilization) -> float:
    """The FLOPs per token a GPU-hour is spent on: model FLOPs with --mfu, hardware FLOPs (with the
    recompute the user fixed; none when left to the planner) otherwise."""
    args = (shape.matmul_params, shape.num_layers, shape.hidden_size, seq_len)
    mode = resolve_recompute(inputs) or "none"
    return util.charged_per_token(fl.flops_per_token(*args), fl.hardware_flops_per_token(*args, mode))


def _fill_budget(
    inputs: PlanInputs, shape: ModelShape, budget: float, vocab: int, seq_len: int, per_token
) -> ModelShape:
    """Resize so --tokens at the exact per-token FLOPs `per_token(shape)` (attention, and recompute
    where charged) spend 98-100% of `budget` (or the largest shape under it: shapes come in steps of a
    few %); 6ND alone would overshoot by the attention share."""
    target, under = float(shape.num_params), []
    for _ in range(12):  # per-token FLOPs grow ~linearly in N, so a few rescalings converge
        ratio = budget / (inputs.tokens * per_token(shape))
        if ratio >= 1.0:
            under.append((ratio, shape))
        if 1.0 <= ratio <= 1.02:  # spends 98-100% of the budget
            break
        target *= ratio if ratio > 1.0 else 0.995 * ratio  # land under the budget, not on it
        shape = _build_shape(inputs, target, vocab, seq_len)
    # shapes come in steps of a few %: the largest one whose tokens fit the budget
    return min(under, key=lambda rs: rs[0])[1] if under else shape


def _tokens(
    inputs: PlanInputs, shape: ModelShape, per_token: float, charged: float, budget, hw_flops, fit
) -> float:
    """Given, or what fills the hours (charged FLOPs), or what --flops buys at the exact per-token
    FLOPs (attention included: never more than the budget), or the fit's optimum for N."""
    n = shape.num_params
    if inputs.tokens is not None:
        if hw_flops is not None and inputs.tokens * charged > hw_flops * (1 + AGREE_TOLERANCE):
            need = inputs.tokens * charged / hw_flops * inputs.hours
            raise ConfigError(
                f"--tokens {inputs.tokens:.3g} on this model needs {need:,.0f} hours, more than --hours "
                f"{inputs.hours:g}; lower --tokens/--params or raise --hours/--gpus"
            )
        # the user's number, if typed (a size the planner derived from the budget is not a claim)
        claimed = inputs.params if inputs.params is not None else (n if inputs.shape else None)
        if inputs.flops is not None and claimed and _differ(6 * claimed * inputs.tokens, inputs.flops):
            _contradiction(inputs, claimed)
        if inputs.flops is not None and inputs.tokens * per_token > inputs.flops:
            raise ConfigError(
                f"--tokens {inputs.tokens:.4g} at {per_token:.4g} FLOPs/token (6N + 12·L·H·T, attention "
                f"included) needs {inputs.tokens * per_token:.4g} FLOPs, over --flops {inputs.flops:.4g}; "
                f"--tokens {inputs.flops / per_token:.4g} spends the budget exactly, or raise --flops"
            )
        return inputs.tokens
    if hw_flops is not None and inputs.flops is None:
        return hw_flops / charged
    if budget is not None:
        return budget / per_token
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
    util = _utilization(inputs)
    budget, hw_flops = _budget(inputs, peak, util)
    unique = sum(s.available_tokens for s in sources) if sources else None

    # The fits size N in model FLOPs; hours at HFU buy hardware FLOPs, of which recompute takes a share.
    from_hours = budget is not None and inputs.flops is None
    model_budget = budget
    if from_hours and util.kind != "mfu":
        model_budget = budget * fl.MODEL_SHARE[resolve_recompute(inputs) or "none"]
    source = "--flops" if inputs.flops is not None else None
    if from_hours:
        source = (
            "model FLOPs the hours buy at MFU"
            if util.kind == "mfu"
            else "hardware FLOPs the hours buy at HFU"
        )
    target, chosen_by = (
        (None, "shape flags") if inputs.shape else _target_params(inputs, model_budget, unique, fit)
    )
    catalog = load_catalog(inputs.gpu_catalog)  # also when no --gpu-type uses it: a bad file is an error
    if target is not None:  # before a shape is built: 1e30 parameters would make a 1e20-layer model
        where = f"--params {inputs.params:.3g}" if inputs.params is not None else f"the {chosen_by}"
        where += f" for {budget:.3g} FLOPs" if budget is not None and inputs.params is None else ""
        check_trainable(target, where, catalog)
    shape = _build_shape(inputs, target, vocab, seq_len)
    if target is None:
        check_trainable(shape.num_params, "--layers/--hidden/--heads", catalog)
    if chosen_by == "budget / --tokens" and inputs.flops is not None:
        shape = _fill_budget(
            inputs, shape, inputs.flops, vocab, seq_len, lambda s: _model_per_token(s, seq_len)
        )
    elif chosen_by == "budget / --tokens" and hw_flops is not None:
        charge = lambda s: _charged_per_token(inputs, s, seq_len, util)  # noqa: E731
        shape = _fill_budget(inputs, shape, hw_flops, vocab, seq_len, charge)
    n = shape.num_params
    per_token = _model_per_token(shape, seq_len)
    charged = _charged_per_token(inputs, shape, seq_len, util)
    tokens = _tokens(inputs, shape, per_token, charged, budget, hw_flops, fit)
    flops = tokens * per_token  # what the plan spends, attention included: <= --flops
    sizing_flops = model_budget if model_budget is not None else fl.approx_training_flops(n, tokens)

    data = data_plan(sources, tokens, sizing_flops, fit, n) if sources else None
    sizing = sizing_section(
        sizing_flops, flops, budget, source, chosen_by, target or n, n, tokens, fit, unique, vocab
    )
    num_gpus = inputs.num_gpus or MEMORY_GPUS_IF_UNKNOWN
    rec, table, no_fit = recommend(inputs, shape, seq_len, tokens, num_gpus, gpu, peak, util, per_token)
    mode = rec.recompute if rec is not None else (resolve_recompute(inputs) or "none")
    if (
        rec is not None and mode != "none" and resolve_recompute(inputs) is None
        and hw_flops is not None and inputs.flops is None and util.kind != "mfu"
    ):  # fmt: skip
        # The hours were sized without recompute, and only recompute fits: size them again with it,
        # so the plan's tokens (or model) fit the hours at the FLOPs the hardware really executes.
        again = make_plan(replace(inputs, recompute=mode))
        again.notes.insert(
            0, f"{mode} recompute is needed to fit a useful micro-batch; the hours were sized with it"
        )
        return again
    compute = compute_section(inputs, gpu, peak, util, shape, tokens, per_token, seq_len, mode)
    notes = plan_notes(inputs, data, compute, sizing, vocab)
    if inputs.num_gpus is None:
        notes.append(f"memory per GPU assumes {MEMORY_GPUS_IF_UNKNOWN} GPUs (one node); pass --gpus")
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
        teaching=_teaching(n, inputs.precision, inputs.optimizer),
        notes=notes,
        no_fit=no_fit,
        flags=plan_flags(compute),
        megatron=megatron_plan(
            shape,
            tensor=inputs.tensor_parallel,
            pipeline=inputs.pipeline_parallel,
            sequence_parallel=inputs.sequence_parallel,
            recompute=mode,
            flash_attention=inputs.flash_attention,
            num_gpus=num_gpus,
            seq_len=seq_len,
            micro_batch=rec.micro_batch if rec else inputs.micro_batch or 1,
            global_batch_sequences=rec.global_batch_sequences if rec else num_gpus,
            precision=inputs.precision,
            gpu_memory_bytes=gpu.memory_bytes if gpu else None,
        ),  # fmt: skip
        host_memory_bytes=inputs.host_memory_bytes,
    )


def _teaching(num_params: int, precision: str = "bf16", optimizer: str = "adamw") -> dict[str, float]:
    """The rules of thumb, for this model, exactly (memory.rule_of_thumb_bytes): bytes to hold the
    weights in fp32 / bf16 / int8; per parameter to train, ZeRO paper (2 + 2 + K) and DeepSpeed."""
    return rule_of_thumb_bytes(num_params, precision, optimizer)
