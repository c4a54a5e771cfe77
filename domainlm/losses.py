"""Summed token losses -> loss, perplexity, bits per byte; the label that carries no loss.

Shared by pretraining (held-out eval during training) and `domainlm eval`, so it sits below both
stages. Bits per byte divides the total negative log-likelihood (in bits) by the UTF-8 bytes of the
text it covers, so it compares models whose tokenizers cut the same text into different token
counts; perplexity and per-token loss do not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

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


def prefix_token_id(tokenizer: Any) -> int | None:
    """The token each held-out document is conditioned on: BOS, else EOS, else None.

    With it the first text token is predicted too, so the NLL covers all of the document's bytes.
    `domainlm eval` and the in-training eval both use it, so their bits per byte agree.
    """
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return None


@dataclass(frozen=True)
class Window:
    """Input positions [start, end); the last `num_scored` of them are the targets it scores."""

    start: int
    end: int
    num_scored: int

    @property
    def length(self) -> int:
        return self.end - self.start


def causal_windows(num_positions: int, max_length: int, stride: int) -> list[Window]:
    """Windows over positions 0..num_positions-1 that score every target once (position 0 is context only).

    The first window covers [0, max_length) and scores every target in it; each later one scores the
    next `stride` targets, right-aligned, so each sees at least max_length - stride tokens of context.
    """
    if max_length < 2 or not 1 <= stride < max_length:
        raise ValueError(f"need max_length >= 2 and 1 <= stride < max_length, got {max_length}, {stride}")
    if num_positions < 2:
        return []
    end = min(num_positions, max_length)
    windows = [Window(0, end, end - 1)]
    while end < num_positions:
        new_end = min(end + stride, num_positions)
        windows.append(Window(max(0, new_end - max_length), new_end, new_end - end))
        end = new_end
    return windows
