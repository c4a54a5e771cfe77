"""Summed token losses -> loss, perplexity, bits per byte; the label that carries no loss.

Shared by pretraining (held-out eval during training) and `domainlm eval`, so it sits below both
stages. Bits per byte divides the total negative log-likelihood (in bits) by the UTF-8 bytes of the
text it covers, so it compares models whose tokenizers cut the same text into different token
counts; perplexity and per-token loss do not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

IGNORE_INDEX = -100  # label of a position that is not scored (torch / transformers cross-entropy default)
# exp() of a mean loss above this overflows a float; perplexity is reported as inf beyond it.
_MAX_EXP_ARG = 700.0


@dataclass(frozen=True)
class LossSummary:
    """Aggregate over a held-out set: mean nats per predicted token, perplexity, bits per UTF-8 byte."""

    loss: float
    perplexity: float
    bits_per_byte: float
    num_tokens: int
    num_bytes: int

    def as_dict(self) -> dict:
        return asdict(self)


def perplexity(mean_loss_nats: float) -> float:
    return math.exp(mean_loss_nats) if mean_loss_nats < _MAX_EXP_ARG else math.inf


def bits_per_byte(total_loss_nats: float, num_bytes: int) -> float:
    """Total NLL in nats over a text -> bits per UTF-8 byte of that text."""
    if num_bytes <= 0:
        raise ValueError("bits per byte needs a positive byte count")
    return total_loss_nats / (math.log(2) * num_bytes)


def summarize_loss(total_loss_nats: float, num_tokens: int, num_bytes: int) -> LossSummary:
    """`total_loss_nats` summed over `num_tokens` predicted tokens of a text of `num_bytes` bytes."""
    if num_tokens <= 0:
        raise ValueError("no predicted tokens to summarize")
    mean = total_loss_nats / num_tokens
    return LossSummary(
        loss=mean,
        perplexity=perplexity(mean),
        bits_per_byte=bits_per_byte(total_loss_nats, num_bytes),
        num_tokens=num_tokens,
        num_bytes=num_bytes,
    )
