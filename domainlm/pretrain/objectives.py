"""Packed token batches [B, T] -> model inputs and labels for the three pretraining families.

Public API (what the training loop uses):

- `OBJECTIVES = ("causal", "mlm", "span_corruption")`: the names a recipe may give.
- `SpecialTokenIds`: the ids an objective needs (pad, eos, bos, mask, cls, sep, unk, sentinels,
  all_special); `special_ids_from_tokenizer(tokenizer)` derives it from a Hugging Face tokenizer.
- `build_objective(name, *, vocab_size, special, seq_len, seed, ...) -> Objective`.
- `Objective`: `objective(batch, step, rank) -> dict[str, Tensor]`, ready for `model(**out)`;
  `objective.model_family` ("causal" | "masked" | "seq2seq", domainlm.architectures.ModelKind),
  `objective.auto_model_class()` (AutoModelForCausalLM | AutoModelForMaskedLM | AutoModelForSeq2SeqLM),
  `objective.encoder_length` / `objective.decoder_length` (fixed output shapes; the decoder length
  is None for the single-stack families).
- `span_corruption_lengths(tokens_length, ...)` and `compute_input_and_target_lengths(inputs_length,
  ...)`: T5's length arithmetic, to choose the mix's `seq_len` for a wanted encoder length.

Randomness comes from a `torch.Generator` seeded from (seed, step, rank) only, so a batch's masks
are a pure function of its position: resuming at the same position rebuilds the same masks, and
ranks never share masks. Pass as `step` a counter unique to the micro-batch on that rank (e.g.
`optimizer_step * grad_accum + micro_step`). Every operation is element-wise, a sort, a gather or a
scatter on the batch's own device, with no data-dependent shapes, `.item()` or boolean-mask
indexing, so it can run on GPU tensors without a host sync, or on CPU in the data loader.

No `attention_mask` is returned: packed sequences have no padding, and passing an all-ones mask
makes transformers check it with `mask.all()` on every forward (a device-to-host sync that also
blocks the SDPA `is_causal` fast path decision) — `None` means "attend to everything" already.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from domainlm.architectures import ModelKind, auto_class
from domainlm.errors import ConfigError, DataError
from domainlm.losses import IGNORE_INDEX
from domainlm.pretrain.span_noise import (
    compact_rows,
    noise_counts,
    random_spans_noise_mask,
    span_corruption_lengths,
)
from domainlm.pretrain.span_noise import (
    compute_input_and_target_lengths as compute_input_and_target_lengths,  # public API, re-exported
)

OBJECTIVES = ("causal", "mlm", "span_corruption")
_SENTINEL_RE = re.compile(r"<extra_id_(\d+)>")


@dataclass(frozen=True)
class SpecialTokenIds:
    """Special token ids of a tokenizer; None where the tokenizer lacks that token."""

    pad: int | None = None
    eos: int | None = None
    bos: int | None = None
    mask: int | None = None
    cls: int | None = None
    sep: int | None = None
    unk: int | None = None
    sentinels: tuple[int, ...] = ()  # <extra_id_0>, <extra_id_1>, ... in that order
    all_special: tuple[int, ...] = ()  # never masked, never drawn as a random replacement

    def special_set(self) -> list[int]:
        """All special ids, named or listed, sorted and deduplicated."""
        named = (self.pad, self.eos, self.bos, self.mask, self.cls, self.sep, self.unk)
        ids = {i for i in named if i is not None} | set(self.all_special) | set(self.sentinels)
        return sorted(ids)


def special_ids_from_tokenizer(tokenizer: Any) -> SpecialTokenIds:
    """Read a Hugging Face tokenizer's special ids, including T5 sentinels `<extra_id_N>`."""
    found = {}
    for token, index in tokenizer.get_vocab().items():
        match = _SENTINEL_RE.fullmatch(token)
        if match:
            found[int(match.group(1))] = index
    # Only a gap-free run <extra_id_0..n-1> is usable: span i must map to sentinel i.
    sentinels: list[int] = []
    while len(sentinels) in found:
        sentinels.append(found[len(sentinels)])
    return SpecialTokenIds(
        pad=tokenizer.pad_token_id,
        eos=tokenizer.eos_token_id,
        bos=tokenizer.bos_token_id,
        mask=tokenizer.mask_token_id,
        cls=tokenizer.cls_token_id,
        sep=tokenizer.sep_token_id,
        unk=tokenizer.unk_token_id,
        sentinels=tuple(sentinels),
        all_special=tuple(sorted(set(tokenizer.all_special_ids) | set(sentinels))),
    )


def make_generator(seed: int, step: int, rank: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator whose stream depends only on (seed, step, rank), mixed by numpy's SeedSequence."""
    if min(seed, step, rank) < 0:
        raise ValueError(f"seed, step and rank must be >= 0, got {seed}, {step}, {rank}")
    words = np.random.SeedSequence([seed, step, rank]).generate_state(2, np.uint32)
    generator = torch.Generator(device=device)
    generator.manual_seed((int(words[0]) << 31) ^ int(words[1]))  # < 2**63
    return generator


@dataclass(frozen=True)
class Objective(ABC):
    """A pretraining objective: a packed batch [B, seq_len] -> keyword arguments for the model."""

    seq_len: int
    seed: int

    name: str = field(init=False, default="")
    model_family: ModelKind = field(init=False, default="causal")

    @abstractmethod
    def build(self, batch: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """Turn a validated batch into model inputs using `generator` for all randomness."""

    @property
    def encoder_length(self) -> int:
        """Length of `input_ids` in every output batch."""
        return self.seq_len

    @property
    def decoder_length(self) -> int | None:
        """Length of `labels` / `decoder_input_ids` for encoder-decoder objectives, else None."""
        return None

    def auto_model_class(self) -> type:
        """The transformers Auto class that builds a model for this objective."""
        return auto_class(self.model_family)

    def __call__(self, batch: Tensor, step: int, rank: int) -> dict[str, Tensor]:
        if batch.dim() != 2 or batch.shape[1] != self.seq_len:
            raise DataError(
                f"objective {self.name}: expected a batch of shape [B, {self.seq_len}], got "
                f"{list(batch.shape)}; the mix's seq_len must match the recipe's"
            )
        batch = batch.to(torch.long)
        return self.build(batch, make_generator(self.seed, step, rank, batch.device))


def document_position_ids(batch: Tensor, eos_id: int) -> Tensor:
    """Positions that restart at 0 after every EOS (a document ends with its EOS) and at each row start.

    transformers reads restarting `position_ids` (with no attention_mask) as packed documents: SDPA and
    eager get a block-diagonal causal mask, flash-attention its variable-length kernel.
    """
    index = torch.arange(batch.shape[1], device=batch.device).expand_as(batch)
    starts = torch.zeros_like(batch, dtype=torch.bool)
    starts[:, 0] = True
    starts[:, 1:] = batch[:, :-1] == eos_id
    first = torch.where(starts, index, 0).cummax(dim=1).values  # start of each token's document
    return index - first


@dataclass(frozen=True)
class CausalLM(Objective):
    """Next-token prediction; labels equal the inputs because the loss shifts them (logit t predicts t + 1).

    Without `document_masking` every token attends to the whole packed sequence, across document
    boundaries (GPT-2, Llama, BloombergGPT). With it (Megatron's reset_position_ids +
    reset_attention_mask, OLMo-core's document masking) positions restart after each EOS and attention
    stays within the document; the EOS still predicts the next document's first token. `flatten`
    (flash-attention) lays the micro-batch out as one row [1, B*T], the padding-free layout its
    variable-length kernel needs; the first token of each original row is then not a target, as before.
    """

    document_masking: bool = False
    eos_id: int | None = None
    flatten: bool = False

    name: str = field(init=False, default="causal")
    model_family: ModelKind = field(init=False, default="causal")

    def __post_init__(self) -> None:
        if self.document_masking and self.eos_id is None:
            raise ConfigError("data.document_masking: the tokenizer has no EOS token to find documents by")

    def build(self, batch: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        if not self.document_masking:
            return {"input_ids": batch, "labels": batch.clone()}
        positions = document_position_ids(batch, self.eos_id)
        labels = batch.clone()
        if self.flatten:
            labels[1:, 0] = IGNORE_INDEX  # logit of row b's last token must not predict row b + 1's first
            return {
                "input_ids": batch.reshape(1, -1),
                "position_ids": positions.reshape(1, -1),
                "labels": labels.reshape(1, -1),
            }
        return {"input_ids": batch, "position_ids": positions, "labels": labels}


def token_losses(logits: Tensor, labels: Tensor, causal: bool) -> tuple[Tensor, Tensor]:
    """Per-position cross-entropy (float32 softmax) and the mask of scored positions, shaped like `labels`.

    The loss the model would compute (its mean over scored positions), kept per position so the loop
    can also sum it per sequence and source. `causal`: labels are the inputs, logit t predicts t + 1.
    """
    if causal:
        labels = torch.nn.functional.pad(labels[..., 1:], (0, 1), value=IGNORE_INDEX)
    nll = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return nll.view(labels.shape), labels != IGNORE_INDEX


@dataclass(frozen=True)
class MaskedLM(Objective):
    """BERT/RoBERTa masking: 15% of non-special tokens, of which 80% [MASK], 10% random, 10% kept.

    Exactly round(mlm_probability * n) tokens (at least one) are selected in each sequence with n
    maskable tokens, as in BERT's create_pretraining_data.py: the rate is exact, and no batch is left
    without targets (which would make the mean loss NaN).

    Packed sequences are wrapped like the inputs these models see when fine-tuned: with `wrap`,
    [CLS] x[0:T-2] [SEP] when the tokenizer has both (BERT; RoBERTa's <s>...</s>), [CLS] x[0:T-1]
    when it has only CLS. A tokenizer without CLS/SEP (as `domainlm tokenizer train` writes) uses
    its BOS/EOS the same way, which is what RoBERTa's CLS/SEP are. The length stays T; the dropped
    tail (2 of 512 tokens, 0.4%) is the price of position 0 always holding the sequence token that
    classification heads read downstream.
    """

    vocab_size: int = 0
    special: SpecialTokenIds = SpecialTokenIds()
    mlm_probability: float = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    wrap: bool = True

    name: str = field(init=False, default="mlm")
    model_family: ModelKind = field(init=False, default="masked")

    def __post_init__(self) -> None:
        if not 0 < self.mlm_probability < 1:
            raise ConfigError(
                f"objective mlm: mlm_probability {self.mlm_probability} is outside (0, 1); use 0.15"
            )
        if self.special.mask is None:
            raise ConfigError(
                "objective mlm: the tokenizer has no mask token; use a tokenizer with one "
                "(e.g. [MASK] or <mask>)"
            )
        if self.seq_len < 3:
            raise ConfigError(f"objective mlm: seq_len {self.seq_len} is too short; use 8 or more")
        special = torch.tensor(self.special.special_set(), dtype=torch.long)
        candidates = torch.arange(self.vocab_size)
        replacements = candidates[~torch.isin(candidates, special)]
        if replacements.numel() == 0:
            raise ConfigError(f"objective mlm: vocab_size {self.vocab_size} has no non-special token")
        # Frozen dataclass: cache derived tensors through object.__setattr__.
        object.__setattr__(self, "_special", special)
        object.__setattr__(self, "_replacements", replacements)

    def boundary_ids(self) -> tuple[int | None, int | None]:
        """(first, last) ids the wrapping puts around each sequence: CLS/SEP, else BOS/EOS."""
        if not self.wrap:
            return None, None
        first = self.special.cls if self.special.cls is not None else self.special.bos
        last = self.special.sep if self.special.sep is not None else self.special.eos
        return first, (last if first is not None else None)

    def wrap_with_cls_sep(self, batch: Tensor) -> Tensor:
        """Put CLS first (and SEP last) without changing the length; see the class docstring."""
        first, last = self.boundary_ids()
        if first is None:
            return batch
        size = batch.shape[0]
        parts = [batch.new_full((size, 1), first)]
        if last is None:
            parts.append(batch[:, : self.seq_len - 1])
        else:
            parts += [batch[:, : self.seq_len - 2], batch.new_full((size, 1), last)]
        return torch.cat(parts, dim=1)

    def select(self, batch: Tensor, generator: torch.Generator) -> Tensor:
        """Boolean [B, T]: exactly round(p * maskable) positions per row (at least 1), never a special."""
        maskable = ~torch.isin(batch, self._special.to(batch.device))
        num_maskable = maskable.sum(dim=1)
        num_selected = torch.round(num_maskable * self.mlm_probability).clamp(min=1)
        num_selected = torch.where(num_maskable > 0, num_selected, 0).to(torch.long)
        scores = torch.rand(batch.shape, generator=generator, device=batch.device)
        scores = scores.masked_fill(~maskable, 2.0)  # specials sort last, so they are never chosen
        ranks = scores.argsort(dim=1).argsort(dim=1)  # a permutation rank per row: no ties
        return ranks < num_selected[:, None]

    def build(self, batch: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        batch = self.wrap_with_cls_sep(batch)
        selected = self.select(batch, generator)
        labels = torch.where(selected, batch, IGNORE_INDEX)
        action = torch.rand(batch.shape, generator=generator, device=batch.device)
        to_mask = selected & (action < self.mask_replace_prob)
        to_random = selected & ~to_mask & (action < self.mask_replace_prob + self.random_replace_prob)
        replacements = self._replacements.to(batch.device)
        picks = torch.randint(len(replacements), batch.shape, generator=generator, device=batch.device)
        inputs = torch.where(to_mask, self.special.mask, batch)
        inputs = torch.where(to_random, replacements[picks], inputs)
        return {"input_ids": inputs, "labels": labels}


@dataclass(frozen=True)
class SpanCorruption(Objective):
    """T5 span corruption over packed sequences of `seq_len` raw tokens.

    input  = non-noise tokens with each noise span replaced by one sentinel, then EOS;
    target = each sentinel followed by its span, then EOS; decoder input = target shifted right,
    starting with `decoder_start_id` (the pad id for T5). Shapes are fixed: see
    `span_corruption_lengths`; e.g. seq_len 568 -> encoder 512, decoder 114.
    """

    special: SpecialTokenIds = SpecialTokenIds()
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    decoder_start_id: int | None = None  # defaults to special.pad

    name: str = field(init=False, default="span_corruption")
    model_family: ModelKind = field(init=False, default="seq2seq")

    def __post_init__(self) -> None:
        if self.seq_len < 2:
            raise ConfigError(
                f"objective span_corruption: seq_len {self.seq_len} is too short; use 8 or more"
            )
        _, num_spans = noise_counts(self.seq_len, self.noise_density, self.mean_noise_span_length)
        if not self.special.sentinels:
            raise ConfigError("the tokenizer has no sentinel tokens; train one with --sentinels N")
        if len(self.special.sentinels) < num_spans:
            raise ConfigError(
                f"the tokenizer has {len(self.special.sentinels)} sentinel tokens but span corruption of "
                f"{self.seq_len}-token sequences needs {num_spans}; train one with --sentinels {num_spans}"
            )
        if self.special.eos is None:
            raise ConfigError("objective span_corruption: the tokenizer has no EOS token; set eos_token")
        start = self.special.pad if self.decoder_start_id is None else self.decoder_start_id
        if start is None:
            raise ConfigError(
                "objective span_corruption: no decoder start token; the tokenizer needs a pad token (T5 uses it)"
            )
        object.__setattr__(self, "decoder_start_id", start)

    @property
    def lengths(self) -> tuple[int, int]:
        return span_corruption_lengths(self.seq_len, self.noise_density, self.mean_noise_span_length)

    @property
    def encoder_length(self) -> int:
        return self.lengths[0]

    @property
    def decoder_length(self) -> int:
        return self.lengths[1]

    def build(self, batch: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        noise = random_spans_noise_mask(
            batch.shape[0],
            self.seq_len,
            generator,
            self.noise_density,
            self.mean_noise_span_length,
            batch.device,
        )
        return self.corrupt(batch, noise)

    def corrupt(self, batch: Tensor, noise: Tensor) -> dict[str, Tensor]:
        """Model inputs for a given noise mask, which must have this objective's noise token and span
        counts in every row (as `random_spans_noise_mask` draws it)."""
        size = batch.shape[0]
        inputs = self._replace_spans(batch, noise, self.encoder_length - 1)
        labels = self._replace_spans(batch, ~noise, self.decoder_length - 1)
        eos = batch.new_full((size, 1), self.special.eos)
        inputs, labels = torch.cat([inputs, eos], dim=1), torch.cat([labels, eos], dim=1)
        start = labels.new_full((size, 1), self.decoder_start_id)
        decoder_input_ids = torch.cat([start, labels[:, :-1]], dim=1)
        return {"input_ids": inputs, "labels": labels, "decoder_input_ids": decoder_input_ids}

    def _replace_spans(self, batch: Tensor, span_mask: Tensor, width: int) -> Tensor:
        """Replace each run of `span_mask` by one sentinel (the i-th run of the row gets sentinel i)."""
        previous = torch.nn.functional.pad(span_mask[:, :-1], (1, 0), value=False)
        first = span_mask & ~previous
        # For the target (span_mask = ~noise) run i is the non-noise run before noise span i, so
        # sentinel i precedes span i in both the input and the target.
        _, num_spans = noise_counts(self.seq_len, self.noise_density, self.mean_noise_span_length)
        sentinels = torch.tensor(self.special.sentinels[:num_spans], dtype=torch.long, device=batch.device)
        run_index = (first.cumsum(dim=1) - 1).clamp(0, num_spans - 1)
        values = torch.where(first, sentinels[run_index], batch)
        return compact_rows(values, ~(span_mask & previous), width)


def build_objective(
    name: str,
    *,
    vocab_size: int,
    special: SpecialTokenIds,
    seq_len: int,
    seed: int,
    mlm_probability: float = 0.15,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    document_masking: bool = False,
    attention: str = "sdpa",
) -> Objective:
    """Build the objective `name` (one of OBJECTIVES); `vocab_size` is the tokenizer's len.

    `document_masking` (causal only) finds documents by `special.eos`; with `attention`
    flash_attention_2 the batch is flattened for its variable-length kernel."""
    if name == "causal":
        return CausalLM(
            seq_len=seq_len,
            seed=seed,
            document_masking=document_masking,
            eos_id=special.eos,
            flatten=document_masking and attention == "flash_attention_2",
        )
    if name == "mlm":
        return MaskedLM(
            seq_len=seq_len,
            seed=seed,
            vocab_size=vocab_size,
            special=special,
            mlm_probability=mlm_probability,
        )
    if name == "span_corruption":
        return SpanCorruption(
            seq_len=seq_len,
            seed=seed,
            special=special,
            noise_density=noise_density,
            mean_noise_span_length=mean_noise_span_length,
        )
    raise ConfigError(f"objective: unknown objective {name!r}; use one of {', '.join(OBJECTIVES)}")
