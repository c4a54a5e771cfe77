import math

import pytest

from domainlm.errors import ConfigError
from domainlm.plan.scaling import (
    BESIROGLU,
    HOFFMANN,
    R_D_STAR,
    constrained_loss,
    data_constrained_optimum,
    effective_tokens,
    get_fit,
    params_for_tokens,
    rule_of_thumb,
)

GOPHER_FLOPS = 5.76e23  # Hoffmann et al. 2022: Chinchilla was trained with Gopher's compute


def test_rule_of_thumb_gives_chinchilla():
    # N = sqrt(C / 120) = sqrt(4.8e21) = 69.28B; D = 20 N = 1.386T: the paper's 70B / 1.4T within 1%.
    n, d = rule_of_thumb(GOPHER_FLOPS)
    assert n == pytest.approx(math.sqrt(4.8e21))
    assert n == pytest.approx(70e9, rel=0.011)
    assert d == pytest.approx(1.4e12, rel=0.011)


def test_corrected_fit_agrees_with_chinchilla():
    # Besiroglu et al. 2024's constants give 72.2B / 1.33T (18.4 tokens/param) at Gopher's
    # compute: within 5% of 70B / 1.4T, consistent with Hoffmann's Approaches 1 and 2.
    n, d = BESIROGLU.optimum(GOPHER_FLOPS)
    assert n == pytest.approx(70e9, rel=0.05)
    assert d == pytest.approx(1.4e12, rel=0.06)
    assert 6 * n * d == pytest.approx(GOPHER_FLOPS)


def test_published_fit_is_the_outlier_besiroglu_describe():
    # With the paper's rounded constants (a = beta/(alpha+beta) = 0.45), the optimum at Gopher's
    # compute is ~32B on ~3.0T tokens (~93 tokens/param), not the 70B the paper trained: the
    # inconsistency Besiroglu et al. 2024 trace to the fit (rounding and early stopping).
    n, d = HOFFMANN.optimum(GOPHER_FLOPS)
    assert n == pytest.approx(32.19e9, rel=0.005)
    assert d / n == pytest.approx(92.6, rel=0.01)
    g = (0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62)
    assert n == pytest.approx(g * (GOPHER_FLOPS / 6) ** (0.28 / 0.62))


def test_predicted_loss_is_the_formula():
    assert BESIROGLU.loss(70e9, 1.4e12) == pytest.approx(
        1.8172 + 482.01 / 70e9**0.3478 + 2085.43 / 1.4e12**0.3658
    )
    # Chinchilla beats Gopher (280B on 300B tokens) at similar compute under either fit.
    for fit in (HOFFMANN, BESIROGLU):
        assert fit.loss(70e9, 1.4e12) < fit.loss(280e9, 300e9)


def test_optimum_inverse():
    for fit in (HOFFMANN, BESIROGLU):
        n, d = fit.optimum(1e22)
        assert fit.tokens_for_params(n) == pytest.approx(d)
        assert params_for_tokens(d, fit) == pytest.approx(n)


def test_effective_tokens_muennighoff():
    u = 100e9
    assert effective_tokens(50e9, u) == 50e9  # less than one epoch: every token is new
    assert effective_tokens(u, u) == u
    # 4 epochs: R = 3 repeats, D' = U (1 + 15.4 (1 - e^(-3/15.4))) = 3.726 U (93% of 4 U).
    expected = u * (1 + R_D_STAR * (1 - math.exp(-3 / R_D_STAR)))
    assert effective_tokens(4 * u, u) == pytest.approx(expected)
    assert expected / (4 * u) == pytest.approx(0.9315, abs=1e-3)
    # Repeating forever is worth at most U (1 + R*): 16.4 U.
    assert effective_tokens(1e6 * u, u) == pytest.approx(u * (1 + R_D_STAR), rel=1e-6)


def test_bloomberggpt_is_data_constrained():
    # BloombergGPT (Wu et al. 2023): ~2.36e23 FLOPs budget, 708.9B unique tokens (363B FinPile
    # + 345B public), 50.6B parameters. The 20 tokens/param optimum wants 887B tokens (44.3B params),
    # the corrected fit 860B (45.7B params): both more than the unique data.
    flops, unique = 2.36e23, 708.9e9
    n_rule, d_rule = rule_of_thumb(flops)
    n_fit, d_fit = BESIROGLU.optimum(flops)
    assert d_rule == pytest.approx(887e9, rel=0.002) and d_rule > unique
    assert d_fit == pytest.approx(860e9, rel=0.002) and d_fit > unique
    # Repeating 709B tokens ~1.25 times costs little (Muennighoff), so the best model for the data
    # barely moves from the unconstrained optimum: ~44.5B params, still 1.2-1.3 epochs.
    n_dc, d_dc = data_constrained_optimum(flops, unique, BESIROGLU)
    assert 40e9 < n_dc < n_fit
    assert 1.2 < d_dc / unique < 1.3
    assert 6 * n_dc * d_dc == pytest.approx(flops)


def test_scarce_data_favours_more_epochs_over_more_parameters():
    # Muennighoff et al. 2023: excess parameters lose value faster (R_N* = 5.3) than repeated data
    # (R_D* = 15.4), so when data is scarce the frontier moves to a smaller model and more epochs.
    flops, unique = 1e22, 10e9  # the unconstrained optimum wants 184B tokens, 18x the data
    n_free, d_free = BESIROGLU.optimum(flops)
    n_dc, d_dc = data_constrained_optimum(flops, unique, BESIROGLU)
    assert n_dc < n_free and d_dc > d_free
    assert d_dc / unique > 4
    assert constrained_loss(n_dc, d_dc, unique, BESIROGLU) < constrained_loss(
        n_free, d_free, unique, BESIROGLU
    )
    # With plenty of data the constraint is inactive and the two optima coincide.
    n_plenty, _ = data_constrained_optimum(flops, 1e13, BESIROGLU)
    assert n_plenty == pytest.approx(n_free, rel=1e-3)


def test_errors_name_the_flag():
    with pytest.raises(ConfigError, match="--flops must be > 0"):
        rule_of_thumb(-1)
    with pytest.raises(ConfigError, match="--fit 'kaplan'"):
        get_fit("kaplan")
    with pytest.raises(ConfigError, match="unique tokens must be > 0"):
        data_constrained_optimum(1e20, 0, BESIROGLU)
