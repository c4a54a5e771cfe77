"""Compute budget + unique tokens -> compute-optimal (N, D), predicted loss, data-constrained optimum.

- Rule of thumb (Hoffmann et al. 2022, "Chinchilla"): D = 20·N and C = 6·N·D, so N = sqrt(C/120).
  At Gopher's 5.76e23 FLOPs that is 69.3B parameters / 1.39T tokens, the paper's 70B / 1.4T.
- Parametric fit L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, Approach 3, eq. 10) with its
  closed-form optimum under C = 6ND (their eq. 4):
      G = (α·A / (β·B))^(1/(α+β)),  N_opt = G·(C/6)^(β/(α+β)),  D_opt = (C/6)/N_opt.
  Two sets of constants: the paper's (E 1.69, A 406.4, B 410.7, α 0.34, β 0.28), whose optimum puts
  far fewer tokens per parameter than the paper's own Approaches 1-2 (Chinchilla itself would be
  ~32B at its budget), and Besiroglu et al. 2024 ("Chinchilla Scaling: A replication attempt",
  arXiv 2404.10102: E 1.8172, A 482.01, B 2085.43, α 0.3478, β 0.3658), refit on the paper's data,
  which agree with the 20 tokens/parameter rule. The planner uses the Besiroglu fit by default.
- Data-constrained (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", eq. 5-6):
  repeated tokens are worth less. With U unique tokens seen for D total, R = D/U - 1 repeats, the
  effective data is D' = U + U·R*·(1 - exp(-R/R*)), R* = 15.4 (up to ~4 epochs is almost as good as
  new data); excess parameters beyond the optimum for U decay likewise with R_N* = 5.3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from domainlm.errors import ConfigError

TOKENS_PER_PARAM = 20.0  # Chinchilla's rule of thumb (Hoffmann et al. 2022, Table 3)
R_D_STAR = 15.4  # Muennighoff et al. 2023: repeats at which repeated data's value has decayed by 1/e
R_N_STAR = 5.3  # same for parameters beyond the compute-optimal size for the unique data


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

    def loss(self, num_params: float, num_tokens: float) -> float:
        return self.E + self.A / num_params**self.alpha + self.B / num_tokens**self.beta

    def optimum(self, flops: float) -> tuple[float, float]:
        """Closed-form loss-minimizing (N, D) under C = 6ND (Hoffmann et al. eq. 4)."""
        _check_flops(flops)
        a, b = self.alpha, self.beta
        g = (a * self.A / (b * self.B)) ** (1.0 / (a + b))
        num_params = g * (flops / 6.0) ** (b / (a + b))
        return num_params, flops / 6.0 / num_params

    def tokens_for_params(self, num_params: float) -> float:
        """The D for which `num_params` is compute-optimal: invert N_opt = G·(C/6)^(β/(α+β))."""
        a, b = self.alpha, self.beta
        g = (a * self.A / (b * self.B)) ** (1.0 / (a + b))
        return (num_params / g) ** ((a + b) / b) / num_params


HOFFMANN = ScalingFit(
    "hoffmann2022", 1.69, 406.4, 410.7, 0.34, 0.28, "Hoffmann et al. 2022 (Chinchilla), eq. 10"
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
FITS = {fit.name: fit for fit in (HOFFMANN, BESIROGLU)}


def _check_flops(flops: float) -> None:
    if not flops > 0:
        raise ConfigError(f"--flops must be > 0, got {flops:g}")


def get_fit(name: str) -> ScalingFit:
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


def params_for_tokens(num_tokens: float, fit: ScalingFit) -> float:
    """The N whose compute-optimal D equals `num_tokens`: D_opt = N^((α+β)/β - 1) / G^((α+β)/β)."""
    a, b = fit.alpha, fit.beta
    g = (a * fit.A / (b * fit.B)) ** (1.0 / (a + b))
    return (num_tokens * g ** ((a + b) / b)) ** (b / a)


def constrained_loss(num_params: float, num_tokens: float, unique_tokens: float, fit: ScalingFit) -> float:
    """Predicted loss when D tokens are drawn from only `unique_tokens` unique ones (repeats decay)."""
    return fit.loss(
        effective_params(num_params, unique_tokens, fit), effective_tokens(num_tokens, unique_tokens)
    )


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
