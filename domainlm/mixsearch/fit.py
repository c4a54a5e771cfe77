"""Proxies' (mixture, per-domain bits per byte) -> one data-mixing law per domain; its accuracy; the
best mixture on a grid under a constraint.

The law is Ye et al. (2024, "Data Mixing Laws"): L_d(r) = c_d + k_d exp(sum_j t_dj r_j). Why this
and not the alternatives: RegMix (Liu et al., 2024) fits LightGBM on hundreds of proxies, far more
than a 2-core budget trains, and adds a dependency; a quadratic in r needs (M+1)(M+2)/2 parameters
and can put a spurious optimum inside the simplex. The exponential law is monotone along each ratio,
has M + 1 parameters per domain (3 for two sources: one t is redundant since the ratios sum to 1, so
the last source's t is fixed at 0), and Ye et al. show it fits per-domain loss at fixed model and steps.

Fitting uses numpy only: for fixed t the law is linear in (c, k), solved by least squares (variable
projection); t is found by a coarse search then Nelder-Mead on the remaining squared error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_T_LIMIT = 40.0  # |t| bound: exp(40 r) already spans 17 orders of magnitude over r in [0, 1]


@dataclass(frozen=True)
class MixingLaw:
    """L(r) = c + k exp(t . r) for mixtures r (rows of ratios in source order)."""

    c: float
    k: float
    t: tuple[float, ...]

    def predict(self, ratios: np.ndarray) -> np.ndarray:
        return self.c + self.k * np.exp(np.atleast_2d(ratios) @ np.asarray(self.t))

    def as_dict(self) -> dict:
        return {"c": self.c, "k": self.k, "t": list(self.t)}


def _linear_part(z: np.ndarray, losses: np.ndarray) -> tuple[float, float, float]:
    """(c, k, squared error) of the least-squares fit of losses = c + k exp(z)."""
    design = np.column_stack([np.ones_like(z), np.exp(z - z.max())])  # scaled: k absorbs exp(z.max())
    coef, *_ = np.linalg.lstsq(design, losses, rcond=None)
    error = float(np.sum((design @ coef - losses) ** 2))
    return float(coef[0]), float(coef[1] * np.exp(-z.max())), error


def _error(free: np.ndarray, ratios: np.ndarray, losses: np.ndarray) -> float:
    if np.any(np.abs(free) > _T_LIMIT):
        return np.inf
    return _linear_part(ratios[:, :-1] @ free, losses)[2]


def _nelder_mead(func, start: np.ndarray, scale: float = 1.0, iterations: int = 400) -> np.ndarray:
    """Minimize func from `start` (standard reflection/expansion/contraction/shrink coefficients)."""
    simplex = [start] + [start + scale * np.eye(len(start))[i] for i in range(len(start))]
    values = [func(p) for p in simplex]
    for _ in range(iterations):
        order = np.argsort(values)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        centroid = np.mean(simplex[:-1], axis=0)
        reflected = centroid + (centroid - simplex[-1])
        f_reflected = func(reflected)
        if f_reflected < values[0]:
            expanded = centroid + 2 * (centroid - simplex[-1])
            f_expanded = func(expanded)
            new = (expanded, f_expanded) if f_expanded < f_reflected else (reflected, f_reflected)
        elif f_reflected < values[-2]:
            new = (reflected, f_reflected)
        else:
            contracted = centroid + 0.5 * (simplex[-1] - centroid)
            f_contracted = func(contracted)
            if f_contracted < values[-1]:
                new = (contracted, f_contracted)
            else:  # shrink towards the best point
                simplex = [simplex[0]] + [simplex[0] + 0.5 * (p - simplex[0]) for p in simplex[1:]]
                values = [values[0]] + [func(p) for p in simplex[1:]]
                continue
        simplex[-1], values[-1] = new
        if np.ptp(values) <= 1e-14 * max(1.0, abs(values[0])):
            break
    return simplex[int(np.argmin(values))]


def _starts(dim: int) -> np.ndarray:
    """Coarse starting points for t: a grid on one axis, a fixed random cloud in more dimensions."""
    if dim == 1:
        return np.linspace(-_T_LIMIT, _T_LIMIT, 801)[:, None]
    cloud = np.random.default_rng(0).uniform(-10, 10, size=(400 * dim, dim))
    return np.vstack([np.zeros((1, dim)), cloud])


def fit_law(ratios: np.ndarray, losses: np.ndarray) -> MixingLaw:
    """The least-squares mixing law through (ratios (n, M), losses (n,)); deterministic."""
    ratios, losses = np.asarray(ratios, dtype=float), np.asarray(losses, dtype=float)
    starts = _starts(ratios.shape[1] - 1)
    errors = [_error(s, ratios, losses) for s in starts]
    best = [starts[i] for i in np.argsort(errors)[:3]]
    results = [_nelder_mead(lambda p: _error(p, ratios, losses), s, scale=0.5) for s in best]
    free = min(results, key=lambda p: _error(p, ratios, losses))
    c, k, _ = _linear_part(ratios[:, :-1] @ free, losses)
    return MixingLaw(c, k, (*(float(v) for v in free), 0.0))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""

    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        out = np.empty(len(x))
        out[order] = np.arange(len(x), dtype=float)
        for value in np.unique(x):  # ties share their average rank
            tied = x == value
            out[tied] = out[tied].mean()
        return out

    ra, rb = ranks(np.asarray(a, dtype=float)), ranks(np.asarray(b, dtype=float))
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def accuracy(predicted: np.ndarray, measured: np.ndarray) -> dict:
    """How well predictions match measurements: RMSE, worst error, rank correlation."""
    errors = np.asarray(predicted) - np.asarray(measured)
    return {
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "max_abs_error": float(np.max(np.abs(errors))),
        "spearman": spearman(predicted, measured),
    }


@dataclass(frozen=True)
class Choice:
    """The best grid mixture: its ratios, predicted per-domain bits per byte and target objective."""

    ratios: np.ndarray
    predicted: dict[str, float]
    objective: float
    num_feasible: int


def objective(laws: dict[str, MixingLaw], weights: dict[str, float], ratios: np.ndarray) -> np.ndarray:
    """The target: the weighted sum of the domains' predicted bits per byte."""
    return sum(w * laws[d].predict(ratios) for d, w in weights.items())


def best_mixture(
    laws: dict[str, MixingLaw], weights: dict[str, float], grid: np.ndarray, limit: tuple[str, float] | None
) -> Choice | None:
    """The grid mixture with the lowest objective whose `limit` domain stays <= its limit; None if none does."""
    feasible = grid
    if limit is not None:
        domain, ceiling = limit
        feasible = grid[laws[domain].predict(grid) <= ceiling]
    if len(feasible) == 0:
        return None
    values = objective(laws, weights, feasible)
    best = feasible[int(np.argmin(values))]
    predicted = {d: float(law.predict(best)[0]) for d, law in laws.items()}
    return Choice(best, predicted, float(np.min(values)), len(feasible))
