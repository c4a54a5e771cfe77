"""Typed settings for `domainlm tokenizer train` (YAML + --set + flags -> TrainConfig)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from domainlm.config import CorpusPathList, StrictModel, validated_count

# Byte-level models start from all 256 byte symbols, so nothing is ever out of vocabulary.
BYTE_ALPHABET_SIZE = 256
DigitPolicy = Literal["single", "group3", "whole"]
DIGIT_POLICIES: tuple[str, ...] = ("single", "group3", "whole")


class CorpusSpec(StrictModel):
    """One training corpus: its name, where its files are, and its share of the training bytes."""

    name: str = Field(description="Corpus name used in the manifest and in --ratio NAME=R.")
    paths: CorpusPathList = Field(
        min_length=1,
        description="Files, folders or globs read by CorpusReader (relative to the YAML file), or a "
        "shipped sample: finance, legal, medical, general.",
    )
    text_field: str = Field("text", description="JSON/parquet field holding the text.")
    ratio: float | None = Field(
        None, gt=0, le=1, description="Share of training text bytes; all corpora set it or none does."
    )


class SpecialTokens(StrictModel):
    """Special tokens take the first ids, in the order unk, bos, eos, pad, mask, sentinels."""

    unk: str | None = Field("<unk>", description="Unknown token (never produced by byte-level models).")
    bos: str | None = Field("<s>", description="Beginning-of-sequence token.")
    eos: str = Field("</s>", description="End-of-sequence token; always set (mix puts it between documents).")
    pad: str | None = Field("<pad>", description="Padding token.")
    mask: str | None = Field(None, description="Mask token for masked-LM objectives, e.g. '<mask>'.")
    num_sentinels: int = Field(
        0, ge=0, le=1000, description="T5 span-corruption sentinels <extra_id_0> ... <extra_id_{n-1}>."
    )

    def named(self) -> dict[str, str]:
        """{'unk_token': '<unk>', ...} for the tokens that are set, in id order."""
        pairs = [
            ("unk", self.unk),
            ("bos", self.bos),
            ("eos", self.eos),
            ("pad", self.pad),
            ("mask", self.mask),
        ]
        return {f"{key}_token": value for key, value in pairs if value is not None}

    def sentinels(self) -> list[str]:
        return [f"<extra_id_{i}>" for i in range(self.num_sentinels)]

    def ordered(self) -> list[str]:
        """All special tokens in id order, each once (bos and eos may share a string)."""
        seen: list[str] = []
        for token in [*self.named().values(), *self.sentinels()]:
            if token not in seen:
                seen.append(token)
        return seen


class TrainConfig(StrictModel):
    """Everything that determines the trained tokenizer; the manifest stores it resolved."""

    model: Literal["bpe", "unigram"] = Field(
        "bpe",
        description="bpe: byte-level BPE (GPT-2 style, `tokenizers`); unigram: Unigram LM with 256 byte-fallback "
        "tokens (BloombergGPT style, SentencePiece).",
    )
    vocab_size: int = Field(32000, description="Final vocabulary size, special tokens included.")
    min_frequency: int = Field(2, ge=1, description="BPE: a pair must occur this often to be merged.")
    # The digit policy trades arithmetic for length. "single" (Llama, BloombergGPT, the default): every
    # digit is one token, so numbers are written the same way everywhere and models learn arithmetic
    # more easily, but " 2004" costs 4 tokens. "group3" (cl100k/GPT-4): runs cut into groups of up
    # to 3 digits left to right, " 2004" = "200" + "4" (pieces chosen by the trainer). "whole" (GPT-2):
    # a digit run is one pre-token the trainer may merge whole: the shortest text, but each year
    # or version has its own token and the same number is split differently in different places.
    # `vocab report` shows what each costs on your corpus ("digit policy").
    digits: DigitPolicy = Field(
        "single",
        description="Digit runs: single (one token per digit, best for arithmetic), group3 (groups of up "
        "to 3 digits, as cl100k), whole (no split: shortest text, inconsistent numbers).",
    )
    normalization: Literal["none", "nfc", "nfkc"] = Field(
        "none", description="Unicode normalization before tokenizing; 'none' keeps decode(encode(x)) == x."
    )
    lowercase: bool = Field(False, description="Lowercase before tokenizing (lossy).")
    max_piece_length: int = Field(16, ge=1, description="Unigram: longest piece in characters.")
    num_threads: int = Field(
        4, ge=1, description="Unigram: SentencePiece threads (a setting: its float sums depend on it)."
    )
    max_train_bytes: int | None = Field(
        None, description="Cap on UTF-8 bytes of training text (e.g. 200M); sampled by the seed."
    )
    seed: int = Field(0, description="Seed for document sampling when ratios or max_train_bytes apply.")
    model_max_length: int = Field(2048, ge=1, description="Context length written to tokenizer_config.json.")
    special_tokens: SpecialTokens = Field(default_factory=SpecialTokens)
    corpora: list[CorpusSpec] = Field(min_length=1, description="Training corpora.")

    @model_validator(mode="before")
    @classmethod
    def _split_digits_alias(cls, data: object) -> object:
        """`split_digits: true/false` (older configs, --split-digits) means digits: single / whole."""
        if not isinstance(data, dict) or "split_digits" not in data:
            return data
        data = dict(data)
        split = data.pop("split_digits")
        if split is None:
            return data
        if not isinstance(split, bool):
            raise ValueError(
                f"split_digits must be true or false, got {split!r}; or set digits: single|group3|whole"
            )
        alias = "single" if split else "whole"
        if data.get("digits") is not None and data["digits"] != alias:
            raise ValueError(
                f"split_digits={str(split).lower()} (= digits {alias}) conflicts with digits={data['digits']}; "
                "set only digits: single|group3|whole"
            )
        data["digits"] = alias
        return data

    @field_validator("max_train_bytes", mode="before")
    @classmethod
    def _parse_bytes(cls, value: object) -> object:
        return None if value is None else validated_count(value, "max_train_bytes")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        names = [c.name for c in self.corpora]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"corpus names must be unique; repeated: {', '.join(duplicates)}")
        with_ratio = [c.ratio is not None for c in self.corpora]
        if any(with_ratio) and not all(with_ratio):
            raise ValueError("set a ratio for every corpus or for none (natural proportions)")
        if all(with_ratio) and abs(sum(c.ratio for c in self.corpora) - 1.0) > 1e-6:
            total = sum(c.ratio for c in self.corpora)
            raise ValueError(f"corpus ratios must sum to 1, got {total:g}; rescale them")
        if self.model == "unigram" and self.special_tokens.unk is None:
            raise ValueError(
                "the unigram model needs an unk token (SentencePiece reserves id 0 for it); set unk"
            )
        if self.model == "unigram" and self.digits == "group3":
            raise ValueError(
                "digits=group3 is for bpe only (SentencePiece splits digits singly or not at all); "
                "use digits single or whole with the unigram model"
            )
        minimum = BYTE_ALPHABET_SIZE + len(self.special_tokens.ordered())
        if self.vocab_size < minimum:
            raise ValueError(
                f"vocab_size {self.vocab_size} is smaller than the {BYTE_ALPHABET_SIZE}-byte alphabet plus "
                f"{len(self.special_tokens.ordered())} special tokens; use at least {minimum}"
            )
        return self
