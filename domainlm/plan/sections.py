"""Resolved (N, D, shape, hardware) -> the plan's reported sections: sizing (every fit), data (Muennighoff),
compute and time (model and hardware FLOPs, MFU/HFU), and the flags and notes a reader must see.

Split from planner.py, which resolves the inputs; this module only describes what was resolved.
"""

from __future__ import annotations

import math

from domainlm.plan import flops as fl
from domainlm.plan.inputs import DataSource, PlanInputs
from domainlm.plan.result import ComputePlan, DataPlan, FitRow, Sizing, SourcePlan
from domainlm.plan.scaling import (
    FITS,
    Fit,
    ScalingFit,
    constrained_loss,
    data_constrained_optimum,
    data_constrained_validity,
    effective_tokens,
    loss_fit,
    rule_of_thumb,
)
from domainlm.plan.shapes import ModelShape
from domainlm.units import human_count

GPU_YEARS_ABSURD = 1000.0  # more than this is flagged: beyond all but a few industrial training runs
HOURS_PER_YEAR = 8766.0


def data_plan(
    sources: tuple[DataSource, ...], tokens: float, flops: float, fit: Fit, num_params: float
) -> DataPlan:
    unique = sum(s.available_tokens for s in sources)
    plans = []
    for s in sources:
        ratio = s.ratio if s.ratio is not None else s.available_tokens / unique
        need = ratio * tokens
        eff = effective_tokens(need, s.available_tokens)
        plans.append(SourcePlan(s.name, s.available_tokens, ratio, need, need / s.available_tokens, eff))
    best_n, best_d = data_constrained_optimum(flops, unique, loss_fit(fit))
    # The pick and the plan itself must lie where Muennighoff et al. fitted the law, or there is no pick.
    outside = data_constrained_validity(best_n, best_d, unique)
    outside += [p for p in data_constrained_validity(num_params, tokens, unique) if p not in outside]
    needed = fit.tokens_for_params(num_params)
    return DataPlan(
        unique_tokens=unique,
        tokens=tokens,
        epochs=tokens / unique,
        effective_tokens=sum(p.effective_tokens for p in plans),
        short_of_rule=unique < rule_of_thumb(flops)[1],
        short_of_fit=unique < fit.optimum(flops)[1],
        best_params=None if outside else best_n,
        best_tokens=None if outside else best_d,
        best_epochs=None if outside else best_d / unique,
        one_epoch_params=flops / (6.0 * unique),
        outside_fit=outside,
        tokens_needed=needed,
        unique_tokens_needed=needed / EPOCHS_GOOD,
        sources=plans,
    )


def predicted_loss(n: float, tokens: float, unique: float | None, fit: ScalingFit) -> float:
    """Nats/token the fit predicts (data-constrained when the unique data is known)."""
    return constrained_loss(n, tokens, unique, fit) if unique else fit.loss(n, tokens)


def sizing_section(
    c6nd, flops, budget, budget_source, chosen_by, target, n, tokens, fit: Fit, unique, vocab: int
) -> Sizing:
    """Optima at the plan's compute (`c6nd`, the 6ND unit the fits use); `flops` is what is spent."""
    rule_n, rule_d = rule_of_thumb(c6nd)
    fit_n, fit_d = fit.optimum(c6nd)
    rows = [FitRow(f.name, f.source, *f.optimum(c6nd), used=f is fit) for f in FITS.values()]
    lfit = loss_fit(fit)
    loss = predicted_loss(n, tokens, unique, lfit)
    return Sizing(
        flops=flops, budget_flops=budget, budget_source=budget_source, chosen_by=chosen_by,
        target_params=target, params=n,
        tokens=tokens, tokens_per_param=tokens / n, rule_params=rule_n, rule_tokens=rule_d,
        fit=fit.name, fit_source=fit.source, fit_params=fit_n, fit_tokens=fit_d, fits=rows,
        loss_fit=lfit.name, predicted_loss=loss if loss <= math.log(vocab) else None,
    )  # fmt: skip


def compute_section(
    inputs: PlanInputs, gpu, peak, util: fl.Utilization, shape: ModelShape, tokens, per_token, seq_len, mode
) -> ComputePlan:
    """FLOPs (model and hardware), utilizations and time, with the recompute the plan uses."""
    total = tokens * per_token
    hardware = fl.hardware_flops_per_token(
        shape.matmul_params, shape.num_layers, shape.hidden_size, seq_len, mode
    )
    gpu_hours = util.seconds(tokens, per_token, hardware, 1, peak) / 3600.0 if peak else None
    days = gpu_hours / inputs.num_gpus / 24.0 if gpu_hours and inputs.num_gpus else None
    cost = gpu_hours * inputs.price_per_gpu_hour if gpu_hours and inputs.price_per_gpu_hour else None
    mfu, hfu = util.mfu_hfu(per_token, hardware)
    flops_6nd = fl.approx_training_flops(shape.num_params, tokens)
    return ComputePlan(
        flops_6nd=flops_6nd, pflops_days_6nd=fl.pflops_days(flops_6nd), flops_per_token=per_token,
        flops=total, attention_share=12.0 * shape.num_layers * shape.hidden_size * seq_len / per_token,
        pflops_days=fl.pflops_days(total), recompute=mode, hardware_flops_per_token=hardware,
        hardware_flops=tokens * hardware, gpu_type=gpu.name if gpu else None, num_gpus=inputs.num_gpus,
        peak_flops=peak, mfu=mfu, hfu=hfu, utilization_given=util.kind, mfu_assumed=util.kind == "assumed",
        gpu_hours=gpu_hours, gpu_years=gpu_hours / HOURS_PER_YEAR if gpu_hours else None, days=days,
        budget_hours=inputs.hours, cost=cost,
    )  # fmt: skip


def plan_flags(compute: ComputePlan) -> list[str]:
    """Resources beyond reason, said before anything else is read."""
    flags = []
    if compute.gpu_years is not None and compute.gpu_years > GPU_YEARS_ABSURD:
        flags.append(
            f"this plan needs {compute.gpu_years:,.0f} GPU-years of {compute.gpu_type} "
            f"(> {GPU_YEARS_ABSURD:,.0f}): check the budget, size and tokens before anything else"
        )
    if compute.hfu > 1:
        flags.append(
            f"MFU {compute.mfu:.0%} with {compute.recompute} recompute means HFU {compute.hfu:.0%} > 100%: "
            "impossible; lower --mfu"
        )
    return flags


# Muennighoff et al. 2023: up to ~4 epochs, repeated tokens are worth almost as much as new ones;
# by ~16 epochs extra repeats are worth next to nothing.
EPOCHS_GOOD, EPOCHS_FUTILE = 4.0, 16.0


# The ranges the Chinchilla fits were made on (Hoffmann et al. 2022: 70M-16B parameters,
# 5B-500B tokens); the loss formula outside them is an extrapolation.
FIT_PARAMS_RANGE = (7e7, 1.6e10)
FIT_TOKENS_RANGE = (5e9, 5e11)


def plan_notes(
    inputs: PlanInputs, data: DataPlan | None, compute: ComputePlan, sizing: Sizing, vocab: int
) -> list[str]:
    notes = []
    if compute.mfu_assumed and compute.peak_flops:
        notes.append(f"HFU {compute.hfu:g} assumed (typical of tuned dense training); set --hfu or --mfu")
    if sizing.predicted_loss is None:
        notes.append(
            f"the {sizing.loss_fit} fit predicts more than ln({vocab:,}) = {math.log(vocab):.2f} nats/token, "
            "worse than a uniform guess over the vocabulary: no loss is reported (outside the fit)"
        )
    if sizing.budget_source == "--flops" and sizing.flops < sizing.budget_flops * 0.999:
        notes.append(
            f"spends {sizing.flops:.4g} of the {sizing.budget_flops:.4g} FLOPs budget (6N + 12·L·H·T per token)"
        )
    (n_lo, n_hi), (d_lo, d_hi) = FIT_PARAMS_RANGE, FIT_TOKENS_RANGE
    inside = n_lo <= sizing.params <= n_hi and d_lo <= sizing.tokens <= d_hi
    if not inside and sizing.predicted_loss is not None:
        notes.append(
            f"{human_count(sizing.params)} params / {human_count(sizing.tokens)} tokens is outside the range the "
            "scaling fits were made on (70M-16B params, 5B-500B tokens): the predicted loss is an extrapolation"
        )
    if data is None:
        return notes
    if data.outside_fit and (data.short_of_rule or data.short_of_fit or data.epochs > 1):
        notes.append(
            "outside the data-constrained fit (Muennighoff et al. 2023 fitted 7M-9B params, <= 900B tokens, "
            f">= 100M unique tokens): {'; '.join(data.outside_fit)}; no size is recommended for this data. "
            f"A {human_count(sizing.params)}-param model wants {human_count(data.tokens_needed)} tokens "
            f"({human_count(data.unique_tokens_needed)} unique at 4 epochs); you have {human_count(data.unique_tokens)}"
        )
    elif data.short_of_rule or data.short_of_fit:
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
