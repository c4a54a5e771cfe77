import numpy as np
import pytest

from domainlm.errors import DataError
from domainlm.mixsearch.sample import fine_grid, held_out_indices, ratio_bounds, sample_mixtures

# 60 steps x 16 sequences x 128 tokens, as searches/finance.yaml trains each proxy
TOKENS = 60 * 16 * 128


def test_bounds_come_from_repetition_limits():
    # finance: 2 x (40,000 // 128 = 312 sequences) = 624 of 960 sequences -> 0.65; general: no limit below 0.95
    bounds = ratio_bounds(
        {"finance": 40_000, "general": 10**6}, {"finance": 2, "general": 1}, 128, TOKENS, 0.05
    )
    assert bounds.low == (0.05, 0.05)
    assert bounds.high == (624 / 960, 0.95)
    assert "max_repeats 2 x 40,000 available tokens" in bounds.why_high[0]
    assert bounds.why_high[1] == "1 - min_ratio 0.05 for each other source"


def test_bounds_with_no_feasible_mixture():
    with pytest.raises(DataError, match="no mixture of 122,880 training tokens exists"):
        ratio_bounds({"a": 20_000, "b": 30_000}, {"a": 1, "b": 1}, 128, TOKENS, 0.05)


def test_samples_lie_within_limits_and_start_with_the_reference():
    bounds = ratio_bounds(
        {"finance": 40_000, "general": 10**6}, {"finance": 2, "general": 1}, 128, TOKENS, 0.05
    )
    mixtures = sample_mixtures(bounds, np.array([0.5, 0.5]), 10, seed=0)
    assert mixtures.shape == (10, 2)
    assert mixtures[0].tolist() == [0.5, 0.5]
    assert np.allclose(mixtures.sum(axis=1), 1) and bounds.inside(mixtures).all()
    assert len({tuple(row) for row in mixtures.round(4)}) == 10
    # both ends of the feasible segment are measured (finance's end is its repetition limit 624 / 960)
    assert mixtures[:, 0].min() == 0.05 and mixtures[:, 0].max() == 0.65
    gaps = np.diff(np.sort(mixtures[:, 0]))
    assert gaps.min() > 0.25 * (0.65 - 0.05) / 9  # no two mixtures bunched together


def test_sampling_is_seeded_reproducible_and_prefix_stable():
    bounds = ratio_bounds({"a": 10**6, "b": 10**6, "c": 50_000}, {"a": 1, "b": 1, "c": 1}, 128, TOKENS, 0.05)
    reference = np.array([0.4, 0.4, 0.2])
    first = sample_mixtures(bounds, reference, 8, seed=3)
    assert np.array_equal(first, sample_mixtures(bounds, reference, 8, seed=3))
    assert not np.array_equal(first, sample_mixtures(bounds, reference, 8, seed=4))
    assert np.array_equal(
        first, sample_mixtures(bounds, reference, 10, seed=3)[:8]
    )  # more budget: same first 8
    assert bounds.inside(first).all() and np.allclose(first.sum(axis=1), 1)
    assert first[:, 2].max() <= 50_000 // 128 / 960  # c's repetition limit: 390 of 960 sequences


def test_held_out_proxies_are_inner_points():
    mixtures = np.array(
        [[0.5, 0.5], [0.95, 0.05], [0.05, 0.95], [0.3, 0.7], [0.7, 0.3], [0.2, 0.8], [0.8, 0.2]]
    )
    held = held_out_indices(mixtures, 3, seed=0)
    assert len(held) == 3 and set(held) <= {3, 4, 5, 6}
    assert held == held_out_indices(mixtures, 3, seed=0)


def test_fine_grid_steps_and_bounds():
    bounds = ratio_bounds({"a": 10**6, "b": 10**6}, {"a": 1, "b": 1}, 128, TOKENS, 0.05)
    grid = fine_grid(bounds, 200_000)
    assert len(grid) == 901 and np.allclose(np.diff(grid[:, 0]), 0.001)
    assert grid[0].tolist() == pytest.approx([0.05, 0.95]) and np.allclose(grid.sum(axis=1), 1)
    three = ratio_bounds({"a": 10**6, "b": 10**6, "c": 10**6}, {"a": 1, "b": 1, "c": 1}, 128, TOKENS, 0.1)
    grid3 = fine_grid(three, 10_000)  # step 1/100, every part >= 10: 70 more in 3 parts = C(72, 2)
    assert len(grid3) == 2556 and three.inside(grid3).all()
