"""Training texts + TrainConfig -> a Unigram LM tokenizer (SentencePiece, 256 byte-fallback tokens).

BloombergGPT's tokenizer is a Unigram model that treats text as bytes and splits digits. We train
it with SentencePiece, the reference Unigram implementation (the `tokenizers` UnigramTrainer needs
~25% more tokens on the same text here: it splits " shall" into " " + "s" + "hall"), with all 256
bytes as fallback tokens, so nothing is unknown, and convert the model to a `tokenizers.Tokenizer`
that encodes exactly as SentencePiece does: "▁" for spaces and a dummy "▁" prefix (like Llama),
Viterbi over the pieces, bytes for anything else. decode(encode(text)) == text for any text
without special-token strings in it (like Llama's tokenizer, a special token in the text gets a
"▁" prepended to the text after it).
"""

from __future__ import annotations

import io
import logging
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

from domainlm.errors import DataError
from domainlm.tokenizer.config import TrainConfig

log = logging.getLogger(__name__)

SPACE = "▁"  # SentencePiece's visible space (U+2581)
# SentencePiece trains on "sentences", one thread each, and a long sentence costs it far more than
# the same text in short ones: a corpus that is one 50 MB line ran on one core without end, and a
# few hundred KB without spaces fail inside it. Texts are fed in pieces of at most this many
# characters, cut at a space: SentencePiece splits pieces at spaces anyway, and the "▁" it prepends
# to every sentence stands for the space the cut removed, so the statistics do not change. A run
# without spaces (code, base64, CJK) longer than this is cut where it reaches it.
MAX_SENTENCE_CHARS = 8192
_MAX_SENTENCE_BYTES = 4 * MAX_SENTENCE_CHARS  # SentencePiece skips longer sentences; none is


def split_long_text(text: str, limit: int = MAX_SENTENCE_CHARS) -> Iterator[str]:
    """`text` in pieces of at most `limit` characters, each cut at (and dropping) its last space."""
    start = 0
    while len(text) - start > limit:
        cut = text.rfind(" ", start + 1, start + limit + 1)
        if cut == -1:  # no space in reach: cut the run itself
            yield text[start : start + limit]
            start += limit
        else:
            yield text[start:cut]
            start = cut + 1
    if start == 0 or start < len(text):
        yield text[start:]


def _prepare(texts: Iterable[str], config: TrainConfig) -> Iterator[str]:
    """Apply the configured normalization in Python, as the HF normalizer will at encode time,
    and cut long texts into pieces SentencePiece trains on quickly."""
    form = {"nfc": "NFC", "nfkc": "NFKC"}.get(config.normalization)
    for text in texts:
        if form:
            text = unicodedata.normalize(form, text)
        yield from split_long_text(text.lower() if config.lowercase else text)


def train_unigram(config: TrainConfig, texts: Iterable[str], model_path: Path | None = None) -> Tokenizer:
    """Train with SentencePiece and convert; specials take ids 0.. in TrainConfig order (unk first).

    `model_path` also keeps the SentencePiece model itself (for tools that read .model files)."""
    import sentencepiece as spm

    specials = config.special_tokens.ordered()
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_prepare(texts, config),
            model_writer=model,
            model_type="unigram",
            vocab_size=config.vocab_size,
            hard_vocab_limit=False,  # a small corpus may support fewer pieces; the manifest says how many
            byte_fallback=True,
            split_digits=config.digits == "single",  # "group3" is refused by TrainConfig for unigram
            max_sentencepiece_length=config.max_piece_length,
            normalization_rule_name="identity",  # normalization is ours (above), so HF can mirror it
            remove_extra_whitespaces=False,
            add_dummy_prefix=True,
            allow_whitespace_only_pieces=True,
            character_coverage=0.9995,
            max_sentence_length=_MAX_SENTENCE_BYTES,
            shuffle_input_sentence=False,
            num_threads=config.num_threads,
            unk_id=0,
            unk_piece=specials[0],
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            user_defined_symbols=specials[1:],
            minloglevel=2,
        )
    except RuntimeError as exc:
        reason = (str(exc).strip().splitlines() or ["failed"])[-1][:240]
        raise DataError(
            f"unigram training (sentencepiece): {reason}; check the corpora and vocab_size"
        ) from None
    if model_path is not None:
        Path(model_path).write_bytes(model.getvalue())
    return _to_tokenizer(spm.SentencePieceProcessor(model_proto=model.getvalue()), specials, config)


def _to_tokenizer(sp, specials: list[str], config: TrainConfig) -> Tokenizer:
    """The SentencePiece model as a `tokenizers` Unigram with byte fallback and SP's whitespace rules."""
    size = sp.get_piece_size()
    # Specials and byte pieces are never reached by matching text (added tokens / fallback only);
    # a score below every real piece keeps a literal "<0x41>" in the text from becoming one token.
    floor = min(sp.get_score(i) for i in range(size)) - 10.0
    reserved = set(range(len(specials)))
    vocab = [
        (sp.id_to_piece(i), floor if i in reserved or sp.is_byte(i) else sp.get_score(i)) for i in range(size)
    ]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=True))
    steps = []
    if config.normalization != "none":
        steps.append(normalizers.NFC() if config.normalization == "nfc" else normalizers.NFKC())
    if config.lowercase:
        steps.append(normalizers.Lowercase())
    tokenizer.normalizer = normalizers.Sequence(
        [*steps, normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)]
    )
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tokenizer
