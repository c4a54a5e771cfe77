"""Rows (one model input each, with the targets it scores) -> padded batches -> summed NLL in nats.

Shared by the three objectives: a row builder decides what is scored (perplexity.py for causal
models, denoising.py for masked and seq2seq ones); this module batches rows of similar length,
runs the model under `torch.inference_mode` and sums the cross-entropy of the labelled positions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from domainlm.eval.encoding import TextIds, TransformersIds
from domainlm.losses import IGNORE_INDEX


class Row(Protocol):
    """One model input. `labels[t]` is the token that the logits at position t must predict."""

    @property
    def length(self) -> int: ...

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(input_ids, labels aligned with the logits, decoder_input_ids or None)."""
        ...


@dataclass(frozen=True)
class CausalRow:
    """A causal window: `ids` are its input tokens, of which the last `num_scored` are targets."""

    ids: np.ndarray
    num_scored: int

    @property
    def length(self) -> int:
        return len(self.ids)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, None]:
        labels = np.full(len(self.ids), IGNORE_INDEX, dtype=np.int64)
        # The logit at position t predicts token t + 1, so the targets shift left by one.
        first = len(self.ids) - self.num_scored
        labels[first - 1 : len(self.ids) - 1] = self.ids[first:]
        return self.ids, labels, None


@dataclass(frozen=True)
class RowPlan:
    """Rows to score plus the counts that the summed NLL is divided by."""

    rows: list[Row]
    num_tokens: int  # scored text tokens
    num_unscored: int  # text tokens no row scores (first tokens when there is no prefix token)


def tokenize(tokenizer: Any, texts: Sequence[str], encoder: TextIds | None = None) -> list[np.ndarray]:
    """Each text's token ids without special tokens (the caller adds the ones its objective needs).

    `encoder` (encoding.py: the fast ids, proved equal) replaces the tokenizer's own call."""
    return (encoder or TransformersIds(tokenizer)).encode(texts)


def batch_rows(rows: list[Row], batch_size: int) -> list[list[Row]]:
    """Rows sorted longest first (little padding; an out-of-memory shows on the first batch), then cut.

    Equal lengths are ordered by how many targets they score, so a causal document's first window
    (scores everything) does not share a batch with later ones (score `stride`), whose batch then
    needs only the logits of its last stride + 1 positions.
    """
    # Stable sort: ties keep build order, so batches are deterministic.
    ordered = sorted(rows, key=lambda row: (-row.length, -getattr(row, "num_scored", 0)))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def _pad(arrays: list[np.ndarray], value: int, left: bool = False) -> torch.Tensor:
    width = max(len(a) for a in arrays)
    out = np.full((len(arrays), width), value, dtype=np.int64)
    for i, array in enumerate(arrays):
        if left:
            out[i, width - len(array) :] = array
        else:
            out[i, : len(array)] = array
    return torch.from_numpy(out)


def collate(rows: list[Row], pad_id: int, left: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Padded model inputs and labels (-100 on padding and unscored positions)."""
    parts = [row.arrays() for row in rows]
    input_ids = _pad([p[0] for p in parts], pad_id, left)
    attention_mask = _pad([np.ones(len(p[0])) for p in parts], 0, left)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if parts[0][2] is not None:
        inputs["decoder_input_ids"] = _pad([p[2] for p in parts], pad_id, left)
    return inputs, _pad([p[1] for p in parts], IGNORE_INDEX, left)


def keeps_tail_logits(model: Any) -> bool:
    """Whether a causal model takes `logits_to_keep` and `position_ids` (almost every HF decoder)."""
    params = inspect.signature(model.forward).parameters
    return "logits_to_keep" in params and "position_ids" in params


def tail_collate(rows: list[CausalRow], pad_id: int) -> tuple[dict[str, Any], torch.Tensor]:
    """Left-padded causal batch that asks the model for the logits of the scored tail only.

    Scored targets sit at the end of every window, so with left padding they share the last
    columns: the LM head (vocab-sized, often the costliest matmul of a small model) and the softmax
    run on max(num_scored) + 1 positions instead of the whole window. Explicit position ids keep
    absolute-position models exact under left padding.
    """
    inputs, labels = collate(rows, pad_id, left=True)
    keep = max(row.num_scored for row in rows) + 1
    inputs["position_ids"] = (inputs["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
    inputs["logits_to_keep"] = keep
    return inputs, labels[:, -keep:]


def _summed_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over labelled positions (softmax in float32, sum in float64).

    When few positions are labelled (masked LMs score 1 in 7) they are gathered first, so the
    vocab-sized softmax skips the rest; when most are (causal tails) gathering would only copy.
    """
    scored = labels != IGNORE_INDEX
    if scored.float().mean() < 0.5:  # a device-to-host sync per batch; negligible against a forward pass
        nll = F.cross_entropy(logits[scored].float(), labels[scored], reduction="none")
    else:
        flat = logits.reshape(-1, logits.shape[-1]).float()
        nll = F.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none")
    return nll.double().sum()  # float64 sum: thousands of per-token losses lose digits in float32


def score_batches(
    model: Any,
    batches: list[list[Row]],
    pad_id: int,
    device: torch.device,
    on_batch: Callable[[], None] | None = None,
) -> float:
    """Total NLL (nats) of every labelled position."""
    causal = all(isinstance(row, CausalRow) for rows in batches for row in rows[:1])
    tail = causal and keeps_tail_logits(model)
    total = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode():
        for rows in batches:
            inputs, labels = tail_collate(rows, pad_id) if tail else collate(rows, pad_id)
            inputs = {
                k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in inputs.items()
            }
            labels = labels.to(device, non_blocking=True)
            logits = model(**inputs).logits
            total += _summed_nll(logits, labels)
            if on_batch is not None:
                on_batch()
    return float(total.item())
