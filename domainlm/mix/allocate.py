"""Per-source token counts + target ratios -> sequences per source, exact to the sequence.

Every packed sequence holds tokens of one source only, so a source's realized share of the tokens
is its share of the sequences. The `S` training sequences are split by largest remainder (Hamilton):
each source gets floor(S * ratio) and the leftover sequences go to the largest fractional parts,
so every realized ratio is within 1/S of its target and the counts sum to S exactly. Ratios are
handled as exact fractions of their decimal text (0.51 is 51/100), so allocations are golden
numbers a test can compute by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from domainlm.errors import DataError
from domainlm.units import human_count


@dataclass(frozen=True)
class Supply:
    """What one source offers: its training tokens (EOS included) and how often it may repeat."""

    name: str
    ratio: float
    available_tokens: int
    max_repeats: float = 1.0


@dataclass(frozen=True)
class Allocation:
    """What one source contributes to the mix."""

    name: str
    target_ratio: float
    available_tokens: int
    available_sequences: int  # whole seq_len sequences in one pass over the source
    sequences: int  # sequences taken (repeats included)
    seq_len: int
    total_sequences: int

    @property
    def tokens_taken(self) -> int:
        return self.sequences * self.seq_len

    @property
    def repeats(self) -> float:
        """Epochs over the source (sequences taken / sequences in one pass)."""
        return self.sequences / self.available_sequences

    @property
    def realized_ratio(self) -> float:
        return self.sequences / self.total_sequences


def exact_ratios(ratios: list[float]) -> list[Fraction]:
    """Ratios as exact fractions of their shortest decimal text, normalized to sum to exactly 1."""
    fractions = [Fraction(repr(float(r))) for r in ratios]
    total = sum(fractions)
    return [f / total for f in fractions]


def largest_remainder(total: int, ratios: list[Fraction]) -> list[int]:
    """Split `total` items by `ratios` (summing to 1): floors, then +1 to the largest remainders.

    Ties go to the earlier source, so the result depends only on the inputs.
    """
    quotas = [total * r for r in ratios]
    counts = [int(q) for q in quotas]  # floor: quotas are non-negative
    leftover = total - sum(counts)
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:leftover]:
        counts[i] += 1
    return counts


def _caps(supplies: list[Supply], seq_len: int) -> list[int]:
    """Most sequences each source can give: floor(max_repeats x whole sequences in one pass)."""
    return [int(Fraction(repr(float(s.max_repeats))) * (s.available_tokens // seq_len)) for s in supplies]


def _check_nonempty(supplies: list[Supply], seq_len: int) -> None:
    empty = [s for s in supplies if s.available_tokens < seq_len]
    if empty:
        raise DataError(
            "; ".join(
                f"source {s.name!r} has {s.available_tokens} training tokens, less than one "
                f"seq_len {seq_len} sequence; add data, lower seq_len or lower its val_fraction"
                for s in empty
            )
        )


def _max_feasible(ratios: list[Fraction], caps: list[int]) -> int:
    """The largest S whose largest-remainder split gives no source more than its cap.

    Each source gets floor(S r) or one more, so S r < cap + 1 bounds S from above, and
    S <= cap / r is always feasible; search down from the bound (fewer than 1 / min(r) steps).
    """
    upper = min(math.ceil((cap + 1) / r) - 1 for cap, r in zip(caps, ratios, strict=True))
    lower = min(math.floor(cap / r) for cap, r in zip(caps, ratios, strict=True))
    for total in range(upper, lower, -1):
        if all(n <= c for n, c in zip(largest_remainder(total, ratios), caps, strict=True)):
            return total
    return lower


def _shortfall(supply: Supply, needed: int, cap: int, total: int, seq_len: int) -> str:
    one_pass = supply.available_tokens // seq_len
    missing = (needed - cap) * seq_len
    repeats = needed / one_pass
    return (
        f"source {supply.name!r} has {human_count(supply.available_tokens)} training tokens but needs "
        f"{human_count(needed * seq_len)} (ratio {supply.ratio:g} of {human_count(total * seq_len)}) = "
        f"{repeats:.3f} repeats, over max_repeats {supply.max_repeats:g}: {human_count(missing)} tokens "
        f"missing; add at least {human_count(missing / supply.max_repeats)} tokens of data, lower its ratio "
        f"to <= {cap / total:.4f} (or lower total_tokens), or allow sources.{supply.name}.max_repeats >= "
        f"{_round_up(repeats, 3):g}"
    )


def _round_up(value: float, digits: int) -> float:
    """Round up at `digits` decimals (a limit that is then enough), tolerating float noise."""
    scale = 10**digits
    return math.ceil(value * scale - 1e-9) / scale


def allocate(supplies: list[Supply], seq_len: int, total_tokens: int | Literal["all"]) -> list[Allocation]:
    """Sequences per source for `total_tokens` (rounded down to whole sequences) or `all`.

    Raises DataError, listing every short source with the tokens missing and the three ways out.
    """
    _check_nonempty(supplies, seq_len)
    ratios = exact_ratios([s.ratio for s in supplies])
    caps = _caps(supplies, seq_len)
    total = _max_feasible(ratios, caps) if total_tokens == "all" else total_tokens // seq_len
    counts = largest_remainder(total, ratios)
    short = [
        _shortfall(s, n, c, total, seq_len) for s, n, c in zip(supplies, counts, caps, strict=True) if n > c
    ]
    if short:
        raise DataError("; ".join(short))
    starved = [s.name for s, n in zip(supplies, counts, strict=True) if n == 0]
    if starved:
        raise DataError(
            f"total of {total} sequences leaves source(s) {', '.join(starved)} with none at their ratio; "
            "raise total_tokens (or max_repeats for `all`) or drop the source"
        )
    return [
        Allocation(s.name, s.ratio, s.available_tokens, s.available_tokens // seq_len, n, seq_len, total)
        for s, n in zip(supplies, counts, strict=True)
    ]
