"""A local HF tokenizer + batches of documents -> flat token arrays with one EOS after each document.

Speed: byte-level BPE tokenizers are encoded by tiktoken's core (tokenizer/fast_bpe.py: the same
ids, proved on probes and the run's first documents, several times less CPU); others by
`Tokenizer.encode_batch_fast`. Both run on all cores (threads over the items of a batch, GIL
released) and skip the character offsets that `encode_batch` computes. A batch holding a few
very long documents would leave cores idle, so documents longer than `chunk_chars` are cut into
pieces first, only just before a newline that is followed by a non-space character. For byte-level
BPE (GPT-2, RoBERTa, ...) and whitespace pre-tokenizers (BERT) the pre-tokenizer already breaks
the text there, so the pieces tokenize to exactly the tokens of the whole document. Tokenizers
whose pre-tokenization reaches across such a newline (Llama-3-style regexes that glue "."+"\\n",
Metaspace prepending "▁" to every input) would change; `splitting_is_exact` tests the tokenizer on
probe text and the run's first documents, and splitting is turned off when any of them differ.

Choosing and proving the encoder costs ~1.5 CPU-s for GPT-2, more than a whole warm re-mix reading
the token cache: `LazyEncoder` does it only when the first cache miss has text to tokenize.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from itertools import chain
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from domainlm.errors import ConfigError
from domainlm.tokenizer.fast_bpe import Encoder, TokenizersEncoder, build_encoder
from domainlm.tokenizer.load import LoadedTokenizer, load_tokenizer

log = logging.getLogger(__name__)

CHUNK_CHARS = 16_384  # pieces of this size keep every core busy and cost one Python step each
_PROBES = (
    "Item 7.\nManagement's Discussion\n\nRevenue rose 12%  to $4.2B.\n  Net income: (loss)\n\t\tdone",
    "First line\nsecond line\n\n\nthird after blanks\r\nwindows line\n- bullet\n1. numbered\n'quoted'\n\"q\"",
    "res judicata; q.i.d. \u00e9t\u00e9 \u4e2d\u6587\n\u2014dash\nend.\n",
)


def load_mix_tokenizer(path: str | Path, eos_token: str | None = None) -> LoadedTokenizer:
    """The one loader (domainlm.tokenizer.load) + the mix's own need: an EOS between documents."""
    loaded = load_tokenizer(path, eos_token=eos_token)
    if loaded.eos_token_id is None:
        raise ConfigError(
            f"tokenizer {loaded.path}: names no eos_token, needed between documents; set `eos_token: <token>` "
            "in the mix YAML (or --set eos_token=...), e.g. </s>, <|endoftext|> or [SEP]"
        )
    return loaded


def split_text(text: str, chunk_chars: int = CHUNK_CHARS) -> list[str]:
    """Cut `text` into pieces of about `chunk_chars`, each cut just before a '\\n' followed by non-space."""
    if len(text) <= chunk_chars:
        return [text]
    pieces, start = [], 0
    while len(text) - start > chunk_chars:
        cut = text.find("\n", start + chunk_chars)
        while cut != -1 and (cut + 1 >= len(text) or text[cut + 1].isspace()):
            cut = text.find("\n", cut + 1)
        if cut == -1:
            break
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def _encode_ids(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [encoding.ids for encoding in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


def splitting_is_exact(tokenizer: Tokenizer, samples: Sequence[str], chunk_chars: int = 64) -> bool:
    """True when split pieces of the probes and `samples` encode to the tokens of the whole texts."""
    texts = [*_PROBES, *samples]
    whole = _encode_ids(tokenizer, texts)
    for text, ids in zip(texts, whole, strict=True):
        pieces = split_text(text, chunk_chars)
        if len(pieces) > 1 and list(chain.from_iterable(_encode_ids(tokenizer, pieces))) != ids:
            return False
    return True


class BatchEncoder:
    """Encode batches of documents into one flat array per document (tokens then EOS).

    The ids come from the fastest encoder proved to give the tokenizer's own ids on probes and
    `probe_texts` (tokenizer/fast_bpe.py: tiktoken for byte-level BPE, else `tokenizers`; `fast=False`
    forces `tokenizers`). `encoder_name` says which one ran, for the manifest.
    """

    def __init__(
        self,
        loaded: LoadedTokenizer,
        split_long: bool = True,
        chunk_chars: int = CHUNK_CHARS,
        probe_texts: Sequence[str] = (),
        fast: bool = True,
    ):
        self.loaded = loaded
        self.split_long = split_long
        self.chunk_chars = chunk_chars
        tokenizer = loaded.tokenizer
        self.encoder: Encoder = (
            build_encoder(tokenizer, probe_texts) if fast else TokenizersEncoder(tokenizer)
        )
        log.debug("tokenizer %s: encoding with %s", loaded.path, self.encoder.name)

    @property
    def encoder_name(self) -> str:
        return self.encoder.name

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, lengths): all documents' tokens back to back, each followed by EOS; per-doc lengths."""
        if self.split_long:
            pieces_per_doc = [split_text(text, self.chunk_chars) for text in texts]
        else:
            pieces_per_doc = [[text] for text in texts]
        ids = self.encoder.encode_batch(list(chain.from_iterable(pieces_per_doc)))
        eos = np.array([self.loaded.eos_token_id], dtype=self.loaded.dtype)
        parts, lengths, k = [], [], 0
        for pieces in pieces_per_doc:
            doc = ids[k : k + len(pieces)]
            k += len(pieces)
            lengths.append(sum(len(p) for p in doc) + 1)
            parts.extend(doc)
            parts.append(eos)
        # ids are < vocab_size, so the cast to the mix dtype (uint16 for most vocabularies) is exact
        flat = np.concatenate(parts).astype(self.loaded.dtype, copy=False) if parts else eos[:0]
        return flat, np.asarray(lengths, dtype=np.int64)


class LazyEncoder:
    """A BatchEncoder made by `build()` on the first `encode`: a re-mix whose every file is a cache
    hit never pays for the splitting check and the fast encoder's proof. `loaded` (what the cache
    keys need) is there from the start; `encoder_name` is None until something was encoded."""

    def __init__(self, loaded: LoadedTokenizer, build: Callable[[], BatchEncoder]) -> None:
        self.loaded = loaded
        self._build = build
        self._built: BatchEncoder | None = None

    def get(self) -> BatchEncoder:
        if self._built is None:
            self._built = self._build()
        return self._built

    @property
    def encoder_name(self) -> str | None:
        return None if self._built is None else self._built.encoder_name

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.get().encode(texts)
