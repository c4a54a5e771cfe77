"""Causal LM + documents -> sliding-window rows that score every text token exactly once.

Each document is prefixed with the tokenizer's BOS token (else its EOS token, which is what
`domainlm mix` puts between documents) so its first token is predicted too, and the total NLL then
covers all of the document's bytes: that is what makes bits per byte comparable across
tokenizers. A tokenizer with neither token leaves the first token of each document unscored; the
report counts those tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from domainlm.eval.encoding import TextIds
from domainlm.eval.scoring import CausalRow, RowPlan, tokenize
from domainlm.eval.windows import causal_windows
from domainlm.losses import prefix_token_id

__all__ = ["causal_rows", "prefix_token_id"]


def causal_rows(
    tokenizer: Any, texts: Sequence[str], max_length: int, stride: int, encoder: TextIds | None = None
) -> RowPlan:
    """Windows over every document (see windows.py for how `stride` sets the context)."""
    prefix = prefix_token_id(tokenizer)
    rows: list[CausalRow] = []
    num_tokens = num_unscored = 0
    for ids in tokenize(tokenizer, texts, encoder):
        if prefix is not None:
            ids = np.concatenate([np.asarray([prefix], dtype=np.int64), ids])
        elif len(ids):
            num_unscored += 1
        for window in causal_windows(len(ids), max_length, stride):
            rows.append(CausalRow(ids[window.start : window.end], window.num_scored))
            num_tokens += window.num_scored
    return RowPlan(rows=rows, num_tokens=num_tokens, num_unscored=num_unscored)
