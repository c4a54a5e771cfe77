import math

import pytest

from domainlm.losses import bits_per_byte, perplexity, summarize_loss


def test_summary_matches_hand_math():
    # 4 tokens with NLL ln(2) each over 2 bytes: 4 bits of information over 2 bytes = 2 bits/byte.
    s = summarize_loss(total_loss_nats=4 * math.log(2), num_tokens=4, num_bytes=2)
    assert s.loss == pytest.approx(math.log(2))
    assert s.perplexity == pytest.approx(2.0)
    assert s.bits_per_byte == pytest.approx(2.0)


def test_perplexity_overflow_is_inf_and_bad_counts_raise():
    assert perplexity(1e4) == math.inf
    with pytest.raises(ValueError):
        bits_per_byte(1.0, 0)
    with pytest.raises(ValueError):
        summarize_loss(1.0, 0, 10)
