"""Available tokens + repetition limits -> ratio bounds; bounds + seed -> the proxies' mixtures and the fine grid.

Every proxy trains on the same number of tokens T, so source i can fill at most
max_repeats_i x available_i / T of them: that is its upper bound (the mix allocator enforces the same
cap, to the sequence). The mixtures are the reference, then points picked greedily farthest from those
already picked (maximin) among a seeded low-discrepancy set inside the bounds: the first picks land on
the edges of the feasible region, later ones fill it evenly, and a larger budget keeps the same first
picks (a search resumed with more proxies reuses the finished ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from domainlm.errors import DataError

_CANDIDATES = 4096  # low-discrepancy points tried; picks are within ~1/4096**(1/(M-1)) of the best spread
_DECIMALS = 4  # sampled ratios are rounded to this many decimals (the mix allocates whole sequences anyway)
_MAX_LATTICE = 1000  # the fine grid's finest step is 1/1000


@dataclass(frozen=True)
class Bounds:
    """Per source (in source order): the lowest and highest ratio a mixture may give it, and why."""

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    why_high: tuple[str, ...]

    def inside(self, ratios: np.ndarray, slack: float = 1e-9) -> np.ndarray:
        """Which rows of `ratios` (n, M) lie within the bounds."""
        low, high = np.asarray(self.low), np.asarray(self.high)
        return np.all((ratios >= low - slack) & (ratios <= high + slack), axis=1)

    def as_dict(self) -> dict:
        return {
            n: {"low": lo, "high": hi, "why_high": why}
            for n, lo, hi, why in zip(self.names, self.low, self.high, self.why_high, strict=True)
        }


def ratio_bounds(
    available: dict[str, int],
    max_repeats: dict[str, float],
    seq_len: int,
    train_tokens: int,
    min_ratio: float,
) -> Bounds:
    """[min_ratio, min(1 - the others' minimum, repetition limit)] per source; DataError if none fits."""
    names = tuple(available)
    sequences = train_tokens // seq_len
    others = 1 - (len(names) - 1) * min_ratio
    high, why = [], []
    for name in names:
        cap = int(max_repeats[name] * (available[name] // seq_len))  # whole sequences, as the allocator
        limit = cap / sequences
        if limit < others:
            high.append(limit)
            why.append(
                f"max_repeats {max_repeats[name]:g} x {available[name]:,} available tokens / {train_tokens:,} "
                "training tokens"
            )
        else:
            high.append(others)
            why.append(f"1 - min_ratio {min_ratio:g} for each other source")
    if sum(high) < 1 - 1e-9 or any(h < min_ratio for h in high):
        limits = ", ".join(f"{n} <= {h:.4f}" for n, h in zip(names, high, strict=True))
        raise DataError(
            f"sources: at their repetition limits ({limits}) no mixture of {train_tokens:,} training tokens "
            "exists; raise sources.<name>.max_repeats, add data, or train the proxies on fewer tokens"
        )
    return Bounds(names, tuple([min_ratio] * len(names)), tuple(high), tuple(why))


def _kronecker(count: int, dim: int, seed: int) -> np.ndarray:
    """`count` points of the R_d sequence (Roberts 2018) in [0, 1)^dim, shifted by a seeded offset."""
    phi = 2.0
    for _ in range(64):  # the unique positive root of x^(dim+1) = x + 1
        phi = (1 + phi) ** (1 / (dim + 1))
    alpha = (1 / phi) ** np.arange(1, dim + 1)
    shift = np.random.default_rng(seed).random(dim)
    return (shift + np.arange(1, count + 1)[:, None] * alpha) % 1.0


def _to_simplex(points: np.ndarray) -> np.ndarray:
    """Unit-cube points (n, d) -> simplex points (n, d + 1): the spacings of the sorted coordinates
    (a uniform map, so an even spread in the cube stays even on the simplex)."""
    edges = np.sort(points, axis=1)
    zeros, ones = np.zeros((len(points), 1)), np.ones((len(points), 1))
    return np.diff(np.hstack([zeros, edges, ones]), axis=1)


def _rounded(ratios: np.ndarray, bounds: Bounds) -> np.ndarray:
    """Round to _DECIMALS and give the rounding error to the source with the most room, so rows sum to 1."""
    scale = 10**_DECIMALS
    out = np.minimum(np.round(ratios, _DECIMALS), np.floor(np.asarray(bounds.high) * scale) / scale)
    for row in out:
        room = np.asarray(bounds.high) - row
        row[int(np.argmax(room))] += 1 - row.sum()
    return np.round(out, _DECIMALS + 2)


def _candidates(bounds: Bounds, seed: int) -> np.ndarray:
    dim = len(bounds.names) - 1
    low, high = np.asarray(bounds.low), np.asarray(bounds.high)
    # Sample the simplex shrunk to the lower bounds (r = low + (1 - sum low) s), then keep the
    # points under the upper bounds: every kept point is feasible.
    points = low + (1 - low.sum()) * _to_simplex(_kronecker(_CANDIDATES, dim, seed))
    points = points[np.all(points <= high + 1e-12, axis=1)]
    if len(bounds.names) == 2:  # add the two ends of the feasible segment
        ends = np.array([[high[0], 1 - high[0]], [1 - high[1], high[1]]])
        points = np.vstack([points, ends[bounds.inside(ends)]])
    return points


def sample_mixtures(bounds: Bounds, reference: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` mixtures (count, M): the reference first, then the maximin picks; seeded, reproducible."""
    points = _candidates(bounds, seed)
    picked = [np.asarray(reference, dtype=float)]
    distance = np.linalg.norm(points - picked[0], axis=1)
    while len(picked) < count and len(points):
        best = int(np.argmax(distance))
        if distance[best] <= 0:
            break
        picked.append(points[best])
        distance = np.minimum(distance, np.linalg.norm(points - points[best], axis=1))
    if len(picked) < count:
        raise DataError(
            f"budget: only {len(picked)} distinct mixtures fit the ratio bounds, fewer than {count}; "
            "lower budget or min_ratio"
        )
    return np.vstack([picked[0], _rounded(np.array(picked[1:]), bounds)])


def held_out_indices(mixtures: np.ndarray, count: int, seed: int) -> list[int]:
    """`count` proxies kept out of the fit: drawn (seeded) among those that are neither the reference
    (index 0) nor an extreme of any ratio, so the fit is judged inside its range, not on extrapolation."""
    extremes = set(np.argmin(mixtures, axis=0).tolist()) | set(np.argmax(mixtures, axis=0).tolist())
    inner = [i for i in range(1, len(mixtures)) if i not in extremes]
    pool = inner if len(inner) >= count else [i for i in range(1, len(mixtures))]
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(pool, size=count, replace=False))


def fine_grid(bounds: Bounds, max_points: int) -> np.ndarray:
    """Every mixture with ratios k/N inside the bounds (N at most 1000, about max_points in all)."""
    dim = len(bounds.names) - 1
    steps = int(min(_MAX_LATTICE, max(2, max_points ** (1 / dim))))
    axes = np.meshgrid(*[np.arange(steps + 1)] * dim, indexing="ij")
    counts = np.stack([a.ravel() for a in axes], axis=1)
    counts = counts[counts.sum(axis=1) <= steps]
    grid = np.hstack([counts, steps - counts.sum(axis=1, keepdims=True)]) / steps
    return grid[bounds.inside(grid)]
