"""A model's Hugging Face tokenizer -> the ids eval scores, with the fast encoder where it is exact.

Eval scores `tokenizer(texts, add_special_tokens=False)["input_ids"]`: no special tokens (the row
builders add BOS/EOS/CLS/SEP themselves). For a `TokenizersBackend` (PreTrainedTokenizerFast)
whose class adds no Python step of its own, that call is the Rust backend's
`encode_batch(texts, add_special_tokens=False)` with truncation and padding off and
`encode_special_tokens` set from `split_special_tokens`. So a copy of the backend set up the same
way is handed to tokenizer/fast_bpe.py, which uses tiktoken when it gives the backend's ids on its
probes and the caller's documents; the ids are then also compared with the tokenizer's own call
on the probes and documents. Anything else (slow tokenizers, classes that override the encoding
path, conversions that fail a check) keeps the tokenizer's own call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from tokenizers import Tokenizer

from domainlm.tokenizer.bpe_probes import adversarial_texts
from domainlm.tokenizer.fast_bpe import TiktokenEncoder, check_fast_encoder, first_difference

log = logging.getLogger(__name__)

ENCODER_TRANSFORMERS = "transformers"


class TextIds(Protocol):
    """Texts -> int64 ids per text, no special tokens; `name` goes to the report."""

    name: str

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]: ...


class TransformersIds:
    """The reference: the tokenizer's own call, exactly as eval has always tokenized."""

    name = ENCODER_TRANSFORMERS

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [np.asarray(ids, dtype=np.int64) for ids in encoded]


class FastIds:
    """tiktoken's ids (tokenizer/fast_bpe.py), proved equal to the tokenizer's own call on probes."""

    def __init__(self, encoder: TiktokenEncoder):
        self.encoder = encoder
        self.name = encoder.name

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [ids.astype(np.int64) for ids in self.encoder.encode_batch(list(texts))]


def _plain_backend_call(tokenizer: Any) -> bool:
    """True when `tokenizer(...)` is the base classes' call straight into the Rust backend."""
    from transformers import PreTrainedTokenizerFast
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    kind = type(tokenizer)
    return (
        isinstance(tokenizer, PreTrainedTokenizerFast)
        and isinstance(getattr(tokenizer, "backend_tokenizer", None), Tokenizer)
        and kind.__call__ is PreTrainedTokenizerBase.__call__
        and kind._encode_plus is PreTrainedTokenizerFast._encode_plus
    )


def _backend_as_called(tokenizer: Any) -> Tokenizer:
    """A copy of the backend set up as the tokenizer's call sets it (the original is not touched)."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    backend.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
    return backend


def _valid_unicode(texts: Sequence[str]) -> list[str]:
    """Texts the tokenizer's call accepts (it refuses lone surrogates, which fast_bpe tests itself)."""
    return [t for t in texts if not any(0xD800 <= ord(c) < 0xE000 for c in t)]


def text_encoder(tokenizer: Any, probe_texts: Sequence[str] = (), fast: bool = True) -> TextIds:
    """The fast ids when they are proved to be the tokenizer's own (see the module docstring), else
    the tokenizer's call. `probe_texts` (a few of the documents) are checked too; `fast=False`
    forces the tokenizer's call."""
    reference = TransformersIds(tokenizer)
    if not fast or not _plain_backend_call(tokenizer):
        return reference
    backend = _backend_as_called(tokenizer)
    encoder, reason = check_fast_encoder(backend, probe_texts)
    if encoder is None:
        log.debug("eval encoder: transformers (%s)", reason)
        return reference
    candidate = FastIds(encoder)
    added = [t.content for t in backend.get_added_tokens_decoder().values()]
    texts = _valid_unicode([*probe_texts, *adversarial_texts(added)])
    differs = first_difference(texts, reference.encode(texts), candidate.encode(texts))
    if differs is not None:
        log.debug("eval encoder: transformers (tiktoken differs from the tokenizer on %r)", differs[:60])
        return reference
    return candidate
