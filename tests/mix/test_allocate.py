from fractions import Fraction

import pytest

from domainlm.errors import DataError
from domainlm.mix.allocate import Supply, allocate, exact_ratios, largest_remainder


def test_largest_remainder_golden():
    thirds = [Fraction(1, 3)] * 3
    assert largest_remainder(10, thirds) == [4, 3, 3]  # 3.33 each: the one leftover goes to the first
    # 0.51/0.49 of 101: quotas 51.51 / 49.49 -> floors 51 + 49 = 100, leftover to .51 (finance)
    assert largest_remainder(101, exact_ratios([0.51, 0.49])) == [52, 49]
    assert largest_remainder(7, exact_ratios([0.5, 0.3, 0.2])) == [4, 2, 1]  # 3.5, 2.1, 1.4
    assert sum(largest_remainder(12_345, exact_ratios([0.2, 0.2, 0.6]))) == 12_345


def test_exact_ratios_use_decimal_text():
    assert exact_ratios([0.51, 0.49]) == [Fraction(51, 100), Fraction(49, 100)]
    assert sum(exact_ratios([0.333, 0.333, 0.334])) == 1


def test_fixed_total_rounds_down_to_whole_sequences():
    supplies = [Supply("a", 0.51, 100_000), Supply("b", 0.49, 100_000)]
    allocs = allocate(supplies, seq_len=100, total_tokens=10_150)  # 101 sequences (50 tokens dropped)
    assert [a.sequences for a in allocs] == [52, 49]
    assert [a.tokens_taken for a in allocs] == [5_200, 4_900]
    assert allocs[0].available_sequences == 1_000
    assert allocs[0].repeats == pytest.approx(0.052)
    assert allocs[0].realized_ratio == pytest.approx(52 / 101)


def test_all_is_limited_by_the_scarcest_source_and_its_repeats():
    # a: 10 sequences x 3 repeats = 30 at ratio 0.6 -> S <= 50; b: 100 sequences at 0.4 -> S <= 250.
    supplies = [Supply("a", 0.6, 1_000, max_repeats=3), Supply("b", 0.4, 10_000)]
    allocs = allocate(supplies, seq_len=100, total_tokens="all")
    assert [a.sequences for a in allocs] == [30, 20]
    assert allocs[0].repeats == 3.0
    assert allocs[1].repeats == pytest.approx(0.2)


def test_all_takes_the_largest_total_that_rounding_allows():
    # caps: a 1 sequence, b 10. S <= cap/r gives floor(1/0.51) = 1, which would starve b; but
    # S = 2 splits as quotas 1.02 / 0.98 -> [1, 1], within both caps. S = 3 -> 1.53 -> a gets 2 > 1.
    supplies = [Supply("a", 0.51, 10), Supply("b", 0.49, 100)]
    allocs = allocate(supplies, seq_len=10, total_tokens="all")
    assert [a.sequences for a in allocs] == [1, 1]
    # caps 5 / 50 / 50 at 0.34 / 0.33 / 0.33; cap / r bounds S by 14, yet S = 15 splits as quotas
    # 5.1 / 4.95 / 4.95 -> [5, 5, 5]. S = 16 (5.44 / 5.28 / 5.28) hands a's leftover to a -> 6 > 5.
    supplies = [Supply("a", 0.34, 50), Supply("b", 0.33, 500), Supply("c", 0.33, 500)]
    allocs = allocate(supplies, seq_len=10, total_tokens="all")
    assert [a.sequences for a in allocs] == [5, 5, 5]


def test_too_small_source_error_names_missing_tokens_and_three_ways_out():
    supplies = [Supply("finance", 0.51, 100_000, max_repeats=2), Supply("general", 0.49, 10**7)]
    with pytest.raises(DataError) as info:
        allocate(supplies, seq_len=1_000, total_tokens=1_000_000)
    message = str(info.value)
    # needs 510 sequences, has 100 x 2 repeats = 200: 310 sequences = 310K tokens missing
    assert "source 'finance' has 100K training tokens but needs 510K" in message
    assert "5.100 repeats, over max_repeats 2: 310K tokens missing" in message
    assert "add at least 155K tokens of data" in message
    assert "lower its ratio to <= 0.2000" in message
    assert "allow sources.finance.max_repeats >= 5.1" in message
    assert "\n" not in message


def test_source_smaller_than_one_sequence():
    with pytest.raises(DataError, match="source 'b' has 5 training tokens, less than one seq_len 10"):
        allocate([Supply("a", 0.5, 100), Supply("b", 0.5, 5)], seq_len=10, total_tokens="all")


def test_total_too_small_to_give_every_source_a_sequence():
    with pytest.raises(DataError, match="leaves source\\(s\\) b with none"):
        allocate([Supply("a", 0.9, 1_000), Supply("b", 0.1, 1_000)], seq_len=10, total_tokens=40)
