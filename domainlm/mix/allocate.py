"""Per-source token counts + target ratios -> sequences per source, exact to the sequence.

Every packed sequence holds tokens of one source only, so a source's realized share of the tokens
is its share of the sequences. The `S` training sequences are split by largest remainder (Hamilton):
each source gets floor(S * ratio) and the leftover sequences go to the largest fractional parts,
so every realized ratio is within 1/S of its target and the counts sum to S exactly. Ratios are
handled as exact fractions of their decimal text (0.51 is 51/100), so allocations are golden
numbers a test can compute by hand.

A mixture schedule (`phases`) splits the S sequences into phases by largest remainder of their
shares, then each phase among the sources by its own ratios, so every phase is exact to the
sequence too. A source's repeat cap holds over all phases together.
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


@dataclass(frozen=True)
class PhaseTarget:
    """One phase as configured: its exact share of the total and its ratio per source (supply order)."""

    name: str
    share: Fraction  # the shares of all phases sum to exactly 1
    ratios: tuple[float, ...]  # 0 = the source sits this phase out


@dataclass(frozen=True)
class PhaseAllocation:
    """What one phase holds: a block of `sequences` shard positions starting at `start`."""

    index: int
    name: str
    target_share: float
    start: int  # first global sequence (position in shard order) of the phase
    counts: tuple[int, ...]  # sequences per source, in supply order
    offsets: tuple[int, ...]  # per source: sequences it gave earlier phases (its selection continues there)
    target_ratios: tuple[float, ...]
    seq_len: int

    @property
    def sequences(self) -> int:
        return sum(self.counts)

    @property
    def stop(self) -> int:
        return self.start + self.sequences

    @property
    def tokens(self) -> int:
        return self.sequences * self.seq_len

    @property
    def realized_ratios(self) -> tuple[float, ...]:
        return tuple(n / self.sequences for n in self.counts)


@dataclass(frozen=True)
class Schedule:
    """Per source over the whole mix, and per phase in training order."""

    allocations: list[Allocation]
    phases: list[PhaseAllocation]


def _split(total: int, phases: list[PhaseTarget], ratios: list[list[Fraction]]) -> list[list[int]]:
    """Sequences per phase and source: phases by share, then each phase by its ratios."""
    sizes = largest_remainder(total, [p.share for p in phases])
    return [largest_remainder(size, r) for size, r in zip(sizes, ratios, strict=True)]


def _totals(split: list[list[int]]) -> list[int]:
    return [sum(column) for column in zip(*split, strict=True)]


def _max_feasible_phased(phases: list[PhaseTarget], ratios: list[list[Fraction]], caps: list[int]) -> int:
    """The largest S whose split gives no source more than its cap over all phases.

    A source's count is within 2 x (phases it is in) of S x its overall ratio (each of the two
    roundings moves it by less than one per phase), which bounds S on both sides; largest
    remainder is not monotone in S (the Alabama paradox), so search down from the upper bound.
    """
    upper, lower = None, None
    for k, cap in enumerate(caps):
        overall = sum(p.share * r[k] for p, r in zip(phases, ratios, strict=True))
        slack = 2 * sum(1 for r in ratios if r[k])
        if overall:
            high, low = math.ceil((cap + slack) / overall), max(0, math.floor((cap - slack) / overall))
            upper = high if upper is None else min(upper, high)
            lower = low if lower is None else min(lower, low)
    assert upper is not None and lower is not None, "every source is in some phase (config check)"
    for total in range(upper, lower, -1):
        if all(n <= c for n, c in zip(_totals(_split(total, phases, ratios)), caps, strict=True)):
            return total
    return lower


def _phased_shortfall(supply: Supply, phases, split, k: int, cap: int, total: int, seq_len: int) -> str:
    needed = sum(row[k] for row in split)
    missing = (needed - cap) * seq_len
    repeats = needed / (supply.available_tokens // seq_len)
    parts = ", ".join(
        f"{p.name} {p.ratios[k]:g} of {human_count(sum(row) * seq_len)}"
        for p, row in zip(phases, split, strict=True)
        if p.ratios[k]
    )
    return (
        f"source {supply.name!r} has {human_count(supply.available_tokens)} training tokens but its phases "
        f"need {human_count(needed * seq_len)} ({parts}) = {repeats:.3f} repeats over all phases, over "
        f"max_repeats {supply.max_repeats:g}: {human_count(missing)} tokens missing; add at least "
        f"{human_count(missing / supply.max_repeats)} tokens of data, lower its ratios in the phases (or "
        f"total_tokens), or allow sources.{supply.name}.max_repeats >= {_round_up(repeats, 3):g}"
    )


def _check_phases(supplies: list[Supply], phases: list[PhaseTarget], split: list[list[int]], caps, seq_len):
    total = sum(map(sum, split))
    short = [
        _phased_shortfall(s, phases, split, k, cap, total, seq_len)
        for k, (s, n, cap) in enumerate(zip(supplies, _totals(split), caps, strict=True))
        if n > cap
    ]
    if short:
        raise DataError("; ".join(short))
    for phase, row in zip(phases, split, strict=True):
        starved = [s.name for s, r, n in zip(supplies, phase.ratios, row, strict=True) if r and n == 0]
        if starved:
            raise DataError(
                f"phase {phase.name!r} gets {sum(row)} of {total} sequences, which leaves source(s) "
                f"{', '.join(starved)} with none at their ratio; raise its share or total_tokens (or "
                "max_repeats for `all`), or drop the source from the phase"
            )


def allocate_phases(
    supplies: list[Supply], phases: list[PhaseTarget] | None, seq_len: int, total_tokens: int | Literal["all"]
) -> Schedule:
    """Sequences per phase and source. `phases=None`: one phase at the supplies' ratios, exactly
    `allocate` (same numbers and messages). Otherwise `Supply.ratio` is the source's overall
    target (for the manifest) and the phases' ratios decide. Raises DataError as `allocate` does.
    """
    if phases is None:
        allocations = allocate(supplies, seq_len, total_tokens)
        counts = tuple(a.sequences for a in allocations)
        ratios = tuple(s.ratio for s in supplies)
        only = PhaseAllocation(0, "main", 1.0, 0, counts, (0,) * len(counts), ratios, seq_len)
        return Schedule(allocations, [only])
    _check_nonempty(supplies, seq_len)
    exact = [exact_ratios(list(p.ratios)) for p in phases]
    caps = _caps(supplies, seq_len)
    total = _max_feasible_phased(phases, exact, caps) if total_tokens == "all" else total_tokens // seq_len
    split = _split(total, phases, exact)
    _check_phases(supplies, phases, split, caps, seq_len)
    result, start, given = [], 0, [0] * len(supplies)
    for index, (phase, row) in enumerate(zip(phases, split, strict=True)):
        result.append(
            PhaseAllocation(
                index, phase.name, float(phase.share), start, tuple(row), tuple(given), phase.ratios, seq_len
            )
        )
        start += sum(row)
        given = [g + n for g, n in zip(given, row, strict=True)]
    allocations = [
        Allocation(s.name, s.ratio, s.available_tokens, s.available_tokens // seq_len, n, seq_len, total)
        for s, n in zip(supplies, given, strict=True)
    ]
    return Schedule(allocations, result)
