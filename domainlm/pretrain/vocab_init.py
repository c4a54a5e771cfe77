"""added_tokens_map.json + a base model -> the model with embeddings extended to the new vocabulary.

Continued pretraining with a tokenizer from `domainlm tokenizer extend` (contract B) needs one new
embedding row per added token. Each new row (input embedding, and output head when it is not tied
to it) is set to the mean of the rows of the token's base pieces, the pieces the base tokenizer
splits it into, so the extended model starts out reading and predicting the new token about as it
did the piece sequence, instead of from noise (Hewitt 2021; Gee et al. 2022, "Fast Vocabulary
Transfer").

Public API:
- `load_added_tokens_map(path) -> AddedTokensMap` (DataError naming the file if malformed).
- `extend_embeddings(model, added_tokens_map, *, vocab_size=None, pad_to_multiple_of=None) -> int`:
  resizes in place, keeps input/output tying as it was, returns the new number of embedding rows.
- `pad_embeddings(model, multiple) -> int`: rows rounded up to a multiple (recipe field
  `model.pad_vocab_to_multiple_of` without an added tokens map).
- `warm_new_rows(model, added_tokens_map, batches) -> losses`: fit the new rows alone to domain
  text, everything else frozen (see its docstring for why and the measured effect).

Padding rows (`pad_to_multiple_of`, e.g. 64 so the embedding and head matmuls get tensor-core
shapes) lie past the tokenizer's last id, so no input ever reads them; as outputs they start as the
mean of the base rows (an average logit) and training pushes their logits down.

The map comes from any base `domainlm tokenizer extend` takes: BPE (GPT-2, Llama-3 style) merges
or Unigram (SentencePiece) pieces; either way `base_ids` are the base tokens the new one replaces.

Under ZeRO-3 call this on the full, unpartitioned model before `deepspeed.initialize` (and without
an `HfDeepSpeedConfig` alive, which would partition parameters at construction): the weights are
then plain tensors, and DeepSpeed partitions the resized matrices afterwards.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from domainlm.errors import DataError

logger = logging.getLogger(__name__)


class AddedToken(BaseModel):
    """One token added by `domainlm tokenizer extend`."""

    token: str
    id: int
    base_ids: list[int]  # ids in the base tokenizer of the pieces the token replaces
    base_pieces: list[str] = []


class AddedTokensMap(BaseModel):
    """The contents of added_tokens_map.json (contract B); unknown keys are ignored on purpose,
    so a newer tokenizer stage may record more without breaking pretraining."""

    base_tokenizer: str = ""
    base_fingerprint: str = ""
    base_vocab_size: int
    tokens: list[AddedToken]
    source: str = "added_tokens_map"  # where it was read from, for error messages

    @property
    def vocab_size(self) -> int:
        """Size of the extended vocabulary: ids run contiguously after the base ones."""
        return self.base_vocab_size + len(self.tokens)


def load_added_tokens_map(path: str | Path) -> AddedTokensMap:
    """Read and validate an added_tokens_map.json; every problem is a one-line DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: added tokens map not found; run `domainlm tokenizer extend` to write it")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc}); regenerate it with `domainlm tokenizer extend`"
        ) from None
    try:
        mapping = AddedTokensMap.model_validate(
            {**raw, "source": str(path)} if isinstance(raw, dict) else raw
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise DataError(
            f"{path}: field {where}: {first['msg']}; regenerate it with `domainlm tokenizer extend`"
        ) from None
    validate_added_tokens_map(mapping)
    return mapping


def validate_added_tokens_map(mapping: AddedTokensMap) -> None:
    """Ids contiguous from base_vocab_size, base_ids non-empty and inside the base vocabulary."""
    base, problems = mapping.base_vocab_size, []
    if base <= 0:
        problems.append(f"base_vocab_size is {base}, expected a positive count")
    for offset, entry in enumerate(mapping.tokens):
        expected = base + offset
        if entry.id != expected:
            problems.append(
                f"token {entry.token!r} has id {entry.id}, expected {expected} "
                f"(new ids must run contiguously from base_vocab_size {base})"
            )
        if not entry.base_ids:
            problems.append(f"token {entry.token!r} has no base_ids")
        bad = [i for i in entry.base_ids if not 0 <= i < base]
        if bad:
            problems.append(
                f"token {entry.token!r} has base_ids {bad} outside the base vocabulary [0, {base})"
            )
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DataError(
            f"{mapping.source}: {'; '.join(problems[:3])}{more}; regenerate it with `domainlm tokenizer extend`"
        )


def _as_map(added_tokens_map: AddedTokensMap | str | Path) -> AddedTokensMap:
    if isinstance(added_tokens_map, AddedTokensMap):
        validate_added_tokens_map(added_tokens_map)
        return added_tokens_map
    return load_added_tokens_map(added_tokens_map)


def _piece_means(weight: torch.Tensor, mapping: AddedTokensMap) -> torch.Tensor:
    """[num_new, ...] mean of each new token's base rows, accumulated in float64 (exact for a few
    float32/bf16 rows) and rounded once to the weight's dtype. Works for 1-D biases too."""
    flat_ids = [i for entry in mapping.tokens for i in entry.base_ids]
    owner = [k for k, entry in enumerate(mapping.tokens) for _ in entry.base_ids]
    index = torch.tensor(flat_ids, dtype=torch.long, device=weight.device)
    rows = weight.detach().index_select(0, index).to(torch.float64)
    sums = rows.new_zeros((len(mapping.tokens), *weight.shape[1:]))
    sums.index_add_(0, torch.tensor(owner, dtype=torch.long, device=weight.device), rows)
    counts = torch.tensor(
        [len(e.base_ids) for e in mapping.tokens], dtype=torch.float64, device=weight.device
    )
    return (sums / counts.view(-1, *[1] * (weight.dim() - 1))).to(weight.dtype)


@torch.no_grad()
def _fill_new_rows(weight: torch.Tensor, mapping: AddedTokensMap) -> None:
    """Rows of new tokens <- mean of their pieces; padding rows beyond the vocabulary <- mean of the
    base rows (never read as inputs; as outputs they start as an average token and training pushes
    their logits down)."""
    base, end = mapping.base_vocab_size, mapping.vocab_size
    if mapping.tokens:
        weight[base:end] = _piece_means(weight, mapping)
    if weight.shape[0] > end:
        weight[end:] = weight[:base].to(torch.float64).mean(dim=0).to(weight.dtype)


def _is_tied(model: nn.Module) -> bool:
    output = model.get_output_embeddings()
    return output is not None and output.weight is model.get_input_embeddings().weight


def extend_embeddings(
    model: Any,
    added_tokens_map: AddedTokensMap | str | Path,
    *,
    vocab_size: int | None = None,
    pad_to_multiple_of: int | None = None,
) -> int:
    """Resize `model` (a transformers PreTrainedModel) to the extended vocabulary and initialize the
    new rows as the mean of their base pieces; returns the number of embedding rows.

    `vocab_size`, when given, is the extended tokenizer's len and must match the map. With
    `pad_to_multiple_of` (e.g. 64 for tensor cores) the matrices get extra rows past the vocabulary.
    """
    mapping = _as_map(added_tokens_map)
    embeddings = model.get_input_embeddings()
    if hasattr(embeddings.weight, "ds_id"):
        raise RuntimeError(
            "extend_embeddings needs unpartitioned weights: call it before deepspeed.initialize"
        )
    model_rows = embeddings.weight.shape[0]
    if model_rows != mapping.base_vocab_size:
        raise DataError(
            f"{mapping.source}: base_vocab_size is {mapping.base_vocab_size} but the model has {model_rows} "
            "embedding rows; extend the tokenizer the model was trained with"
        )
    if vocab_size is not None and vocab_size != mapping.vocab_size:
        raise DataError(
            f"{mapping.source}: lists {len(mapping.tokens)} new tokens after {mapping.base_vocab_size}, so the "
            f"extended tokenizer should have {mapping.vocab_size} tokens, but it has {vocab_size}; "
            "use the tokenizer written next to this map"
        )
    tied = _is_tied(model)
    weight = embeddings.weight
    # transformers initializes the added rows randomly (or samples them from the embeddings'
    # covariance with mean_resizing=True, an H x H Cholesky); both are overwritten below, so skip the
    # sampling and keep the caller's RNG stream untouched.
    devices = [weight.device.index or 0] if weight.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        model.resize_token_embeddings(
            mapping.vocab_size, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=False
        )
    _fill_new_rows(model.get_input_embeddings().weight, mapping)
    output = model.get_output_embeddings()
    if output is not None and not tied:
        _fill_new_rows(output.weight, mapping)
    if output is not None and getattr(output, "bias", None) is not None:
        _fill_new_rows(output.bias, mapping)
    if _is_tied(model) != tied:
        raise RuntimeError(f"resizing changed the tying of input and output embeddings (was tied: {tied})")
    rows = model.get_input_embeddings().weight.shape[0]
    logger.info(
        "extended the vocabulary from %d to %d tokens (%d embedding rows, %s head)",
        mapping.base_vocab_size,
        mapping.vocab_size,
        rows,
        "tied" if tied else "untied",
    )
    return rows


def pad_embeddings(model: Any, multiple: int) -> int:
    """Round the embedding rows (and an untied head) up to a multiple of `multiple`; the new rows get
    the mean of the existing ones. Returns the number of rows (unchanged when already a multiple)."""
    if multiple < 1:
        raise ValueError(f"pad_to_multiple_of must be >= 1, got {multiple}")
    rows = model.get_input_embeddings().weight.shape[0]
    mapping = AddedTokensMap(base_vocab_size=rows, tokens=[], source="model.pad_vocab_to_multiple_of")
    return extend_embeddings(model, mapping, pad_to_multiple_of=multiple)


def warm_new_rows(
    model: Any,
    added_tokens_map: AddedTokensMap | str | Path,
    batches: Iterable[torch.Tensor],
    lr: float = 3e-3,
) -> list[float]:
    """Fit only the new tokens' rows (input embedding and untied head) to domain text, every other
    weight frozen and every base row bit-identical; returns the loss of each batch.

    Mean-of-pieces rows are a start, not a fit: a small model reads "d"+"i" well and a fused "di"
    poorly, so its held-out bits per byte right after extension can be far above the base's. A few
    hundred steps on these rows alone (seconds on a CPU for a small model) bring it back to the
    base's before any weight the base learned is touched. `batches`: [batch, seq] token ids of the
    extended tokenizer (causal LM: the labels are the inputs). Call it before deepspeed.initialize.
    """
    mapping = _as_map(added_tokens_map)
    rows = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not rows[0]:
        rows.append(output.weight)
    was_trainable = [(p, p.requires_grad) for p in model.parameters()]
    for parameter, _ in was_trainable:
        parameter.requires_grad_(False)
    for weight in rows:
        weight.requires_grad_(True)
    # Adam with no weight decay leaves a row whose gradient is always zero exactly where it was.
    optimizer = torch.optim.Adam(rows, lr=lr)
    losses = []
    try:
        for batch in batches:
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            for weight in rows:
                weight.grad[: mapping.base_vocab_size] = 0
                weight.grad[mapping.vocab_size :] = 0  # padding rows stay as initialized
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
    finally:
        for parameter, trainable in was_trainable:
            parameter.requires_grad_(trainable)
    return losses
