"""Masked / seq2seq model + documents -> corrupted rows whose passes score every token exactly once.

Masked LMs (BERT style): pseudo-log-likelihood (Salazar et al., 2020) approximated with BERT's
15% masking. Each chunk of a document is scored in ceil(1 / 0.15) = 7 passes; a seeded permutation
splits its tokens into 7 groups (about 14% each) and pass p replaces group p with [MASK] (no
80/10/10: evaluation measures prediction of hidden tokens). Every token is masked exactly once,
so the summed NLL covers all bytes and bits per byte is defined as for causal models, though a
token here sees both sides: compare masked models with each other, not with causal ones.

Seq2seq LMs (T5 style span corruption): a chunk is cut at seeded points into spans of mean length
3; the spans are dealt to 7 passes (about 15% of the tokens each). In a pass each of its spans
becomes one sentinel `<extra_id_i>` in the encoder input, and the target is the sentinels each
followed by its span, then EOS. Only span tokens are summed (sentinels and EOS are scaffolding),
so again every token is scored exactly once.

Chunks do not overlap: `max_length` tokens per encoder input including special tokens.
The masking depends only on (seed, document index, chunk index), never on batching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from domainlm.errors import DataError
from domainlm.eval.encoding import TextIds
from domainlm.eval.scoring import RowPlan, tokenize
from domainlm.eval.windows import chunk_spans
from domainlm.losses import IGNORE_INDEX

MASK_RATE = 0.15
NUM_PASSES = math.ceil(1 / MASK_RATE)  # 7: each token is hidden in exactly one of them
MEAN_SPAN_LENGTH = 3
_MAX_SENTINELS = 1000


@dataclass(frozen=True)
class MaskedRow:
    """A chunk (with its special tokens) in which the tokens at `positions` are replaced by [MASK]."""

    ids: np.ndarray
    positions: np.ndarray
    mask_id: int

    @property
    def length(self) -> int:
        return len(self.ids)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, None]:
        inputs = self.ids.copy()
        inputs[self.positions] = self.mask_id
        labels = np.full(len(self.ids), IGNORE_INDEX, dtype=np.int64)
        labels[self.positions] = self.ids[self.positions]
        return inputs, labels, None


@dataclass(frozen=True)
class Seq2SeqRow:
    """Encoder input, teacher-forced decoder input, and labels (-100 on sentinels and EOS)."""

    input_ids: np.ndarray
    decoder_input_ids: np.ndarray
    labels: np.ndarray

    @property
    def length(self) -> int:
        return len(self.input_ids) + len(self.decoder_input_ids)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.input_ids, self.labels, self.decoder_input_ids


def _rng(seed: int, doc_index: int, chunk_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, doc_index, chunk_index])


def masked_rows(
    tokenizer: Any, texts: Sequence[str], max_length: int, seed: int, encoder: TextIds | None = None
) -> RowPlan:
    """NUM_PASSES masked copies of every chunk; each token is masked in exactly one."""
    if tokenizer.mask_token_id is None:
        raise DataError("masked LM tokenizer has no mask token; save the tokenizer with its [MASK] token")
    # Wrapped as domainlm's MLM pretraining wraps: [CLS] x [SEP], [CLS] x, or bare x.
    head = [tokenizer.cls_token_id] if tokenizer.cls_token_id is not None else []
    tail = [tokenizer.sep_token_id] if head and tokenizer.sep_token_id is not None else []
    body = max_length - len(head) - len(tail)
    if body < 1:
        raise DataError(f"max length {max_length} leaves no room for text between the special tokens")
    rows: list[MaskedRow] = []
    num_tokens = 0
    for doc_index, ids in enumerate(tokenize(tokenizer, texts, encoder)):
        for chunk_index, (start, end) in enumerate(chunk_spans(len(ids), body)):
            chunk = np.concatenate([np.asarray(head, np.int64), ids[start:end], np.asarray(tail, np.int64)])
            order = _rng(seed, doc_index, chunk_index).permutation(end - start) + len(head)
            passes = min(NUM_PASSES, end - start)
            rows.extend(
                MaskedRow(chunk, np.sort(order[p::passes]), tokenizer.mask_token_id) for p in range(passes)
            )
            num_tokens += end - start
    return RowPlan(rows=rows, num_tokens=num_tokens, num_unscored=0)


def sentinel_ids(tokenizer: Any) -> list[int]:
    """Ids of `<extra_id_0>`, `<extra_id_1>`, ... (T5's sentinels), in order, as far as they exist."""
    found = []
    for index in range(_MAX_SENTINELS):
        token_id = tokenizer.convert_tokens_to_ids(f"<extra_id_{index}>")
        if token_id is None or token_id == tokenizer.unk_token_id:
            break
        found.append(int(token_id))
    if not found:
        raise DataError(
            "seq2seq tokenizer has no <extra_id_N> sentinel tokens; span-corruption evaluation follows "
            "T5 and needs them in the tokenizer"
        )
    return found


def _span_bounds(num_tokens: int, rng: np.random.Generator) -> np.ndarray:
    """Seeded cut points splitting [0, num_tokens) into spans of mean length MEAN_SPAN_LENGTH."""
    num_spans = max(1, round(num_tokens / MEAN_SPAN_LENGTH))
    cuts = np.sort(rng.choice(np.arange(1, num_tokens), size=num_spans - 1, replace=False))
    return np.concatenate([[0], cuts, [num_tokens]]).astype(np.int64)


def _corrupt(ids: np.ndarray, bounds: np.ndarray, chosen: np.ndarray, sentinels: list[int], eos: int):
    """One pass: (encoder input, target, scored mask over the target) with `chosen` spans replaced."""
    encoder: list[np.ndarray] = []
    target: list[np.ndarray] = []
    scored: list[np.ndarray] = []
    next_sentinel = 0
    for span, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if not chosen[span]:
            encoder.append(ids[start:end])
            continue
        sentinel = np.asarray([sentinels[next_sentinel]], np.int64)
        next_sentinel += 1
        encoder.append(sentinel)
        target.extend([sentinel, ids[start:end]])
        scored.extend([np.zeros(1, bool), np.ones(end - start, bool)])
    eos_arr = np.asarray([eos], np.int64)
    return (
        np.concatenate([*encoder, eos_arr]),
        np.concatenate([*target, eos_arr]),
        np.concatenate([*scored, np.zeros(1, bool)]),
    )


def seq2seq_rows(
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    seed: int,
    decoder_start_id: int,
    encoder: TextIds | None = None,
) -> RowPlan:
    """Span-corrupted passes of every chunk; each token is inside a corrupted span exactly once."""
    sentinels = sentinel_ids(tokenizer)
    if tokenizer.eos_token_id is None:
        raise DataError("seq2seq tokenizer has no EOS token; save the tokenizer with its </s> token")
    rows: list[Seq2SeqRow] = []
    num_tokens = 0
    for doc_index, ids in enumerate(tokenize(tokenizer, texts, encoder)):
        for chunk_index, (start, end) in enumerate(chunk_spans(len(ids), max_length - 1)):
            rng = _rng(seed, doc_index, chunk_index)
            bounds = _span_bounds(end - start, rng)
            num_spans = len(bounds) - 1
            passes = min(num_spans, max(NUM_PASSES, math.ceil(num_spans / len(sentinels))))
            assignment = rng.permutation(num_spans) % passes
            for p in range(passes):
                enc, target, scored = _corrupt(
                    ids[start:end], bounds, assignment == p, sentinels, tokenizer.eos_token_id
                )
                decoder_inputs = np.concatenate([[decoder_start_id], target[:-1]]).astype(np.int64)
                rows.append(Seq2SeqRow(enc, decoder_inputs, np.where(scored, target, IGNORE_INDEX)))
            num_tokens += end - start
    return RowPlan(rows=rows, num_tokens=num_tokens, num_unscored=0)
