"""Compute budget + unique tokens -> compute-optimal (N, D), predicted loss, data-constrained optimum.

Every fit is selectable (`--fit NAME`) and labelled in the report:
- Rule of thumb (Hoffmann et al. 2022, "Chinchilla"): D = 20·N and C = 6·N·D, so N = sqrt(C/120).
- Parametric fits L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, Approach 3, eq. 2/10) with the
  closed-form optimum under C = 6ND (their eq. 4): G = (α·A / (β·B))^(1/(α+β)),
  N_opt = G·(C/6)^(β/(α+β)), D_opt = (C/6)/N_opt.
  * `hoffmann2022`: the constants as printed (E 1.69, A 406.4, B 410.7, α 0.34, β 0.28). Rounding
    moves the optimum: a = β/(α+β) = 0.452 instead of the paper's 0.46, 32B at Gopher's budget
    instead of the paper's 40B (Figure 4).
  * `hoffmann2022-unrounded`: the paper's TeX-source values, as Epoch AI's replication code writes
    them (Besiroglu et al. 2024, arXiv 2404.10102, and its analyzing-chinchilla code):
    log A = 6.0073404, log B = 6.0179186, log E = 0.5267228, α = 0.33917084, β = 0.2849083.
    They reproduce the paper's a = 0.46 and 40B at 5.76e23 FLOPs.
  * `besiroglu2024` (default): the refit on the paper's data (E 1.8172, A 482.01, B 2085.43,
    α 0.3478, β 0.3658), which agrees with Approaches 1-2 and the 20 tokens/parameter rule.
  * `muennighoff2023`: the data-constrained fit (Muennighoff et al. 2023) with the unrounded
    constants of its reference code (github.com/huggingface/datablations README, "Parametric Fit"):
    log A = 6.255414, log B = 7.3049974, log E = 0.6254804, α = β = 0.3526596.
- Power-law allocations N_opt = k·C^a, D_opt = C/(6·N_opt), which predict no loss:
  * `hoffmann2022-approach1` (a = 0.50) and `hoffmann2022-approach2` (a = 0.49), Hoffmann et al.
    2022 Table 2; k is the geometric-mean fit of N/C^a over the paper's own projection tables
    (Table 3 for Approach 1, Table A3 for Approach 2), which it then reproduces within 2.2% / 3.3%.
  * `kaplan2020`: N_opt ∝ C^0.73 (Kaplan et al. 2020), anchored where Hoffmann et al. apply it
    (App. D.4: 4.68B parameters at 1e21 FLOPs).
- Data-constrained (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", eq. 5-6):
  repeated tokens are worth less. With U unique tokens seen for D total, R_D = D/U - 1 repeats, the
  effective data is D' = U + U·R_D*·(1 - exp(-R_D/R_D*)); parameters beyond U_N, the compute-optimal
  size for U, decay likewise with R_N*. R_D* = 15.387756 and R_N* = 5.309743 are the reference code's
  values (the paper prints 15.4 and 5.3, which miss it by more than 1e-5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from domainlm.errors import ConfigError

TOKENS_PER_PARAM = 20.0  # Chinchilla's rule of thumb (Hoffmann et al. 2022, Table 3)
# Muennighoff et al. 2023, reference code (datablations README): repeats at which the value of repeated
# data (R_D*) / of parameters beyond the optimum for the unique data (R_N*) has decayed by 1/e.
R_D_STAR = 15.387756
R_N_STAR = 5.309743
PFLOPS_DAY = 8.64e19  # FLOPs in one petaFLOP/s-day (Kaplan et al. 2020's compute unit)


def _g(alpha: float, beta: float, a_coef: float, b_coef: float) -> float:
    return (alpha * a_coef / (beta * b_coef)) ** (1.0 / (alpha + beta))


@dataclass(frozen=True)
class ScalingFit:
    """L(N, D) = E + A/N^alpha + B/D^beta, with N parameters and D training tokens."""

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str

    parametric = True  # predicts a loss

    @property
    def exponent(self) -> float:
        """a in N_opt ∝ C^a (Hoffmann et al. eq. 4: β/(α+β))."""
        return self.beta / (self.alpha + self.beta)

    def loss(self, num_params: float, num_tokens: float) -> float:
        return self.E + self.A / num_params**self.alpha + self.B / num_tokens**self.beta

    def optimum(self, flops: float) -> tuple[float, float]:
        """Closed-form loss-minimizing (N, D) under C = 6ND (Hoffmann et al. eq. 4)."""
        _check_flops(flops)
        g = _g(self.alpha, self.beta, self.A, self.B)
        num_params = g * (flops / 6.0) ** self.exponent
        return num_params, flops / 6.0 / num_params

    def tokens_for_params(self, num_params: float) -> float:
        """The D for which `num_params` is compute-optimal: invert N_opt = G·(C/6)^(β/(α+β))."""
        g = _g(self.alpha, self.beta, self.A, self.B)
        return (num_params / g) ** (1.0 / self.exponent) / num_params

    def params_for_tokens(self, num_tokens: float) -> float:
        """The N whose compute-optimal D equals `num_tokens` (the reference code's D_to_N)."""
        g = _g(self.alpha, self.beta, self.A, self.B)
        return (num_tokens * g) ** (self.beta / self.alpha) * g


@dataclass(frozen=True)
class PowerLawFit:
    """N_opt = k·C^a, D_opt = C/(6·N_opt): an allocation rule with no loss prediction."""

    name: str
    k: float
    a: float
    source: str

    parametric = False

    @property
    def exponent(self) -> float:
        return self.a

    def optimum(self, flops: float) -> tuple[float, float]:
        _check_flops(flops)
        num_params = self.k * flops**self.a
        return num_params, flops / 6.0 / num_params

    def tokens_for_params(self, num_params: float) -> float:
        flops = (num_params / self.k) ** (1.0 / self.a)
        return flops / 6.0 / num_params

    def params_for_tokens(self, num_tokens: float) -> float:
        # D = C^(1-a) / (6k)  ->  C = (6·k·D)^(1/(1-a))
        flops = (6.0 * self.k * num_tokens) ** (1.0 / (1.0 - self.a))
        return self.k * flops**self.a


def power_law_through(rows: tuple[tuple[float, float], ...], a: float) -> float:
    """k of N = k·C^a fitted to published (N, C) rows: the geometric mean of N / C^a."""
    return math.exp(sum(math.log(n) - a * math.log(c) for n, c in rows) / len(rows))


# Hoffmann et al. 2022 Table 3 (Approach 1) and Table A3 (Approach 2): (parameters, FLOPs) projections.
APPROACH1_TABLE = (
    (400e6, 1.92e19), (1e9, 1.21e20), (10e9, 1.23e22), (67e9, 5.76e23), (175e9, 3.85e24),
    (280e9, 9.90e24), (520e9, 3.43e25), (1e12, 1.27e26), (10e12, 1.30e28),
)  # fmt: skip
APPROACH2_TABLE = (
    (400e6, 1.84e19), (1e9, 1.20e20), (10e9, 1.32e22), (67e9, 6.88e23), (175e9, 4.54e24),
    (280e9, 1.18e25), (520e9, 4.19e25), (1e12, 1.59e26), (10e12, 1.75e28),
)  # fmt: skip

HOFFMANN = ScalingFit(
    "hoffmann2022",
    1.69,
    406.4,
    410.7,
    0.34,
    0.28,
    "Hoffmann et al. 2022 Approach 3, eq. 10 (rounded, as printed)",
)
HOFFMANN_UNROUNDED = ScalingFit(
    "hoffmann2022-unrounded",
    math.exp(0.5267228),
    math.exp(6.0073404),
    math.exp(6.0179186),
    0.33917084,
    0.2849083,
    "Hoffmann et al. 2022 Approach 3, TeX-source values (as in Epoch AI's replication code)",
)
BESIROGLU = ScalingFit(
    "besiroglu2024",
    1.8172,
    482.01,
    2085.43,
    0.3478,
    0.3658,
    "Besiroglu et al. 2024, Chinchilla replication (corrected fit)",
)
MUENNIGHOFF = ScalingFit(
    "muennighoff2023",
    math.exp(0.6254804),
    math.exp(6.255414),
    math.exp(7.3049974),
    0.3526596,
    0.3526596,
    "Muennighoff et al. 2023 data-constrained fit (reference code's constants)",
)
APPROACH1 = PowerLawFit(
    "hoffmann2022-approach1",
    power_law_through(APPROACH1_TABLE, 0.50),
    0.50,
    "Hoffmann et al. 2022 Approach 1, N_opt ∝ C^0.50 (fitted to Table 3)",
)
APPROACH2 = PowerLawFit(
    "hoffmann2022-approach2",
    power_law_through(APPROACH2_TABLE, 0.49),
    0.49,
    "Hoffmann et al. 2022 Approach 2, N_opt ∝ C^0.49 (fitted to Table A3)",
)
KAPLAN = PowerLawFit(
    "kaplan2020",
    power_law_through(((4.68e9, 1e21),), 0.73),
    0.73,
    "Kaplan et al. 2020, N_opt ∝ C^0.73 (4.68B at 1e21 FLOPs, Hoffmann et al. App. D.4)",
)
FITS: dict[str, ScalingFit | PowerLawFit] = {
    fit.name: fit
    for fit in (BESIROGLU, HOFFMANN, HOFFMANN_UNROUNDED, APPROACH1, APPROACH2, KAPLAN, MUENNIGHOFF)
}
Fit = ScalingFit | PowerLawFit

# Where Muennighoff et al. 2023 fitted their data-constrained law: the runs listed in the reference
# code (utils/parametric_fit.ipynb) span 7M-8.7B parameters, 100M-900B training tokens and unique
# data from 100M tokens; outside this box the formula is an extrapolation.
DC_PARAMS_RANGE = (7e6, 9e9)
DC_MAX_TOKENS = 9e11
DC_MIN_UNIQUE = 1e8


def loss_fit(fit: Fit) -> ScalingFit:
    """The parametric fit that predicts losses for `fit` (an allocation rule predicts none: the default)."""
    return fit if isinstance(fit, ScalingFit) else BESIROGLU


def _check_flops(flops: float) -> None:
    if not flops > 0:
        raise ConfigError(f"--flops must be > 0, got {flops:g}")


def get_fit(name: str) -> Fit:
    if name not in FITS:
        raise ConfigError(f"--fit {name!r}: use one of {', '.join(FITS)}")
    return FITS[name]


def rule_of_thumb(flops: float, tokens_per_param: float = TOKENS_PER_PARAM) -> tuple[float, float]:
    """(N, D) with D = k·N and C = 6ND: N = sqrt(C / 6k)."""
    _check_flops(flops)
    num_params = math.sqrt(flops / (6.0 * tokens_per_param))
    return num_params, tokens_per_param * num_params


def effective_tokens(num_tokens: float, unique_tokens: float, r_star: float = R_D_STAR) -> float:
    """Muennighoff et al. eq. 5: D' = U + U·R*·(1 - e^(-R/R*)), R = D/U - 1 repeats (D' = D when D <= U)."""
    if num_tokens <= unique_tokens:
        return num_tokens
    repeats = num_tokens / unique_tokens - 1.0
    return unique_tokens + unique_tokens * r_star * (1.0 - math.exp(-repeats / r_star))


def effective_params(num_params: float, unique_tokens: float, fit: ScalingFit) -> float:
    """Muennighoff et al. eq. 6: parameters beyond U_N, the compute-optimal size for U tokens, decay."""
    unique_params = params_for_tokens(unique_tokens, fit)
    if num_params <= unique_params:
        return num_params
    repeats = num_params / unique_params - 1.0
    return unique_params + unique_params * R_N_STAR * (1.0 - math.exp(-repeats / R_N_STAR))


def params_for_tokens(num_tokens: float, fit: Fit) -> float:
    """The N whose compute-optimal D equals `num_tokens`."""
    return fit.params_for_tokens(num_tokens)


def constrained_loss(num_params: float, num_tokens: float, unique_tokens: float, fit: ScalingFit) -> float:
    """Predicted loss when D tokens are drawn from only `unique_tokens` unique ones (repeats decay)."""
    return fit.loss(
        effective_params(num_params, unique_tokens, fit), effective_tokens(num_tokens, unique_tokens)
    )


def data_constrained_validity(num_params: float, num_tokens: float, unique_tokens: float) -> list[str]:
    """Why (N, D, U) lies outside the runs the data-constrained law was fitted on; [] when inside."""
    problems = []
    lo, hi = DC_PARAMS_RANGE
    if not lo <= num_params <= hi:
        problems.append(f"{num_params:.3g} parameters (fitted on {lo:.0e}-{hi:.0e})")
    if num_tokens > DC_MAX_TOKENS:
        problems.append(f"{num_tokens:.3g} training tokens (fitted up to {DC_MAX_TOKENS:.0e})")
    if unique_tokens < DC_MIN_UNIQUE:
        problems.append(f"{unique_tokens:.3g} unique tokens (fitted from {DC_MIN_UNIQUE:.0e})")
    return problems


def data_constrained_optimum(flops: float, unique_tokens: float, fit: ScalingFit) -> tuple[float, float]:
    """(N, D) minimizing the data-constrained loss under C = 6ND (a log-spaced search, then refined)."""
    _check_flops(flops)
    if not unique_tokens > 0:
        raise ConfigError(f"unique tokens must be > 0, got {unique_tokens:g}")

    def loss_at(log_n: float) -> float:
        n = math.exp(log_n)
        return constrained_loss(n, flops / 6.0 / n, unique_tokens, fit)

    # Golden-section search over log N; the loss is unimodal along the compute frontier.
    lo, hi = math.log(1e5), math.log(max(flops / 6.0, 1e6))
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(120):
        m1, m2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        lo, hi = (lo, m2) if loss_at(m1) < loss_at(m2) else (m1, hi)
    num_params = math.exp((lo + hi) / 2.0)
    return num_params, flops / 6.0 / num_params
