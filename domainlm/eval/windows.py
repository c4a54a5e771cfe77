"""Token count + context length -> the windows that score every token exactly once.

Causal sliding windows (the stride documented in the README): a document of N positions (the
prefix token and its N - 1 text tokens) is cut into windows of at most `max_length` positions.
The first window covers positions [0, max_length) and scores every target in it. Each later
window scores the next `stride` targets and is right-aligned on them, so each of those targets
sees at least `max_length - stride` tokens of context (the last, shorter chunk sees more).
Smaller strides give more context per token and cost more forward passes: about
N / stride windows of max_length tokens.

Masked and seq2seq models score non-overlapping chunks instead (`chunk_spans`): their objectives
look at both sides, and each chunk is scored in several corrupted passes (see denoising.py).
"""

from __future__ import annotations

from domainlm.losses import Window, causal_windows

# The causal windows live in domainlm.losses, shared with the in-training eval: both score the same targets.
__all__ = ["Window", "causal_windows", "chunk_spans"]


def chunk_spans(num_tokens: int, chunk_length: int) -> list[tuple[int, int]]:
    """Non-overlapping [start, end) chunks of at most `chunk_length` tokens covering all tokens."""
    if chunk_length < 1:
        raise ValueError(f"chunk_length must be >= 1, got {chunk_length}")
    return [(start, min(start + chunk_length, num_tokens)) for start in range(0, num_tokens, chunk_length)]
