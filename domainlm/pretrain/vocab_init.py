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
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field, ValidationError
from torch import nn

from domainlm.errors import ConfigError, DataError
from domainlm.pretrain.config import ModelConfig

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
    # `tokenizer extend --pad-to-multiple-of N`: embedding rows rounded up to a multiple of N (rows_multiple)
    pad_to_multiple_of: int | None = Field(None, gt=0)
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
    head = "tied" if tied else "untied"
    if mapping.tokens:
        logger.info(
            "extended the vocabulary from %d to %d tokens (%d embedding rows, %s head)",
            *(mapping.base_vocab_size, mapping.vocab_size, rows, head),
        )
    elif rows != model_rows:
        logger.info("padded the embeddings from %d to %d rows (%s head)", model_rows, rows, head)
    return rows


def pad_embeddings(model: Any, multiple: int) -> int:
    """Round the embedding rows (and an untied head) up to a multiple of `multiple`; the new rows get
    the mean of the existing ones. Returns the number of rows (unchanged when already a multiple)."""
    if multiple < 1:
        raise ValueError(f"pad_to_multiple_of must be >= 1, got {multiple}")
    rows = model.get_input_embeddings().weight.shape[0]
    mapping = AddedTokensMap(base_vocab_size=rows, tokens=[], source="model.pad_vocab_to_multiple_of")
    return extend_embeddings(model, mapping, pad_to_multiple_of=multiple)


# Adam moves a coordinate by about lr per step whatever the gradient's scale, so lr is set relative
# to the base rows' RMS: a step moves a new row by the same share of a typical row's size in a model
# whose embeddings are small (large models) or large (small ones).
FIT_LR_PER_RMS = 0.1


def warm_new_rows(
    model: Any,
    added_tokens_map: AddedTokensMap | str | Path,
    batches: Iterable[torch.Tensor | list[torch.Tensor]],
    lr: float | None = None,
) -> list[float]:
    """Fit only the new tokens' rows (input embedding and untied head) to domain text, every other
    weight frozen and every base row bit-identical; returns the loss of each step.

    Mean-of-pieces rows are a start, not a fit: a small model reads "d"+"i" well and a fused "di"
    poorly, and the new token's output row steals probability from its first piece, so its held-out
    bits per byte right after extension are 0.08-0.3 above the base's (tests/tokenizer/test_extend_init.py). A hundred
    micro-batch steps on these rows alone bring it back to the base's before any weight the base learned is
    touched (Chinese-LLaMA's stage 1 likewise trains the embeddings alone first). Each item of
    `batches` is one step: [batch, seq] token ids of the extended tokenizer, or a list of them whose
    gradients are accumulated (causal LM: the labels are the inputs). `lr` None: FIT_LR_PER_RMS times
    the RMS of the base input rows. Call it before deepspeed.initialize.
    """
    mapping = _as_map(added_tokens_map)
    rows = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not rows[0]:
        rows.append(output.weight)
    if lr is None:
        base_rows = rows[0].detach()[: mapping.base_vocab_size].to(torch.float64)
        lr = FIT_LR_PER_RMS * base_rows.pow(2).mean().sqrt().item()
    was_trainable = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    for parameter, _ in was_trainable:
        parameter.requires_grad_(False)
    for weight in rows:
        weight.requires_grad_(True)
    model.eval()  # no dropout: the fit is the same on every rank and run
    # Adam with no weight decay leaves a row whose gradient is always zero exactly where it was.
    optimizer = torch.optim.Adam(rows, lr=lr)
    losses = []
    try:
        for step in batches:
            micro = [step] if isinstance(step, torch.Tensor) else list(step)
            total = 0.0
            for batch in micro:
                loss = model(input_ids=batch, labels=batch).loss / len(micro)
                loss.backward()
                total += loss.item()
            for weight in rows:
                weight.grad[: mapping.base_vocab_size] = 0
                weight.grad[mapping.vocab_size :] = 0  # padding rows stay as initialized
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(total)
    finally:
        for parameter, trainable in was_trainable:
            parameter.requires_grad_(trainable)
        model.train(was_training)
    return losses


def fit_steps(
    sequences: Sequence[torch.Tensor], steps: int, micro_batch_size: int, device: torch.device | str = "cpu"
) -> Iterator[torch.Tensor]:
    """`steps` micro-batches of `micro_batch_size` sequences (the recipe's, so the fit fits in memory
    wherever training does), read in order from the start of `sequences` (a mix's training set,
    already shuffled), wrapping around if it is shorter: the same batches on every rank. Many small
    steps fit the rows better than fewer large ones for the same compute (Adam moves each row by
    about lr per step)."""
    if len(sequences) == 0:
        raise DataError("the mix has no training sequences to fit the new token rows on; build a larger mix")
    for step in range(steps):
        start = step * micro_batch_size
        rows = [sequences[(start + k) % len(sequences)] for k in range(micro_batch_size)]
        yield torch.stack(rows).to(device)


# Embedding rows of a model built from scratch are rounded up to this multiple unless the recipe says
# otherwise: the embedding gather and the head matmul ([tokens, H] x [H, rows]) get tensor-core tile
# shapes (GPT-2's 50,257 -> 50,304, as nanoGPT and Megatron's make-vocab-size-divisible-by pad).
DEFAULT_ROWS_MULTIPLE = 128


def rows_multiple(model_config: ModelConfig, mapping: AddedTokensMap | None) -> int | None:
    """The one rule for how many embedding rows pretraining builds: `model.pad_vocab_to_multiple_of`
    if the recipe sets it, else the `--pad-to-multiple-of` that `tokenizer extend` recorded in the map,
    else DEFAULT_ROWS_MULTIPLE for a model built from scratch (a continued `init_from` model keeps its
    checkpoint's rows: Llama-2's 32,000 and Llama-3's 128,256 are multiples of 128 already). Both set
    and different is a ConfigError (checked before launch by pretrain.inputs)."""
    recipe, recorded = model_config.pad_vocab_to_multiple_of, mapping.pad_to_multiple_of if mapping else None
    if recipe is not None and recorded is not None and recipe != recorded:
        raise ConfigError(
            f"model.pad_vocab_to_multiple_of {recipe} != pad_to_multiple_of {recorded} recorded by "
            f"`tokenizer extend --pad-to-multiple-of` in {mapping.source}; drop one of them or make them equal"
        )
    if recipe is not None or recorded is not None:
        return recipe if recipe is not None else recorded
    return DEFAULT_ROWS_MULTIPLE if model_config.init_from is None else None


def padded_rows(vocab_size: int, model_config: ModelConfig) -> int:
    """Embedding rows of a model built from scratch for a `vocab_size`-token tokenizer."""
    multiple = rows_multiple(model_config, None) or 1
    return -(-vocab_size // multiple) * multiple


def new_token_method(model_config: ModelConfig) -> str:
    """`model.new_token_init`, None resolved: fit for causal (llama) models, mean for the others (the fit
    scores next-token prediction, which an encoder does not do)."""
    return model_config.new_token_init or ("fit" if model_config.arch == "llama" else "mean")


def prepare_vocabulary(
    model: Any,
    model_config: ModelConfig,
    vocab_size: int,
    *,
    fit_sequences: Sequence[torch.Tensor] | None = None,
    micro_batch_size: int = 1,
    device: torch.device | str = "cpu",
) -> int:
    """Everything pretraining does to a built model's embedding matrices (pretrain.loop.prepare_model):
    extend them to the added tokens map (mean of pieces, then fitted with `warm_new_rows` when
    `new_token_method` is fit, on `fit_sequences`, the run's training sequences), pad them to
    `rows_multiple`. Returns the number of embedding rows. The fit runs on `device` (the rank's
    accelerator) and the model is moved back afterwards; ranks may differ in the last bit on a GPU, and
    deepspeed.initialize broadcasts rank 0's weights, so they all start alike."""
    mapping = load_added_tokens_map(model_config.added_tokens_map) if model_config.added_tokens_map else None
    multiple = rows_multiple(model_config, mapping)
    if mapping is None:
        rows = model.get_input_embeddings().weight.shape[0]
        return pad_embeddings(model, multiple) if multiple else rows
    rows = extend_embeddings(model, mapping, vocab_size=vocab_size, pad_to_multiple_of=multiple)
    if new_token_method(model_config) != "fit" or not mapping.tokens:
        return rows
    if fit_sequences is None:
        raise ConfigError(
            "model.new_token_init: fit reads the run's training sequences, and the mix is not built yet; "
            "build it first (`domainlm mix`, or start the run) or set model.new_token_init: mean"
        )
    home = model.get_input_embeddings().weight.device
    model.to(device)
    try:
        steps = fit_steps(fit_sequences, model_config.new_token_fit_steps, micro_batch_size, device)
        losses = warm_new_rows(model, mapping, steps)
    finally:
        model.to(home)
    logger.info(
        "fitted the %d new token rows in %d steps: loss %.4f -> %.4f",
        len(mapping.tokens),
        len(losses),
        losses[0],
        losses[-1],
    )
    return rows


def rank_device(accelerator: str) -> str:
    """This rank's device before DeepSpeed sets it: cuda:LOCAL_RANK on a GPU node, else cpu."""
    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if accelerator == "cuda" else "cpu"
