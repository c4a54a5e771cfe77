"""The tiktoken encoder gives `tokenizers`' ids: on the shipped corpora, the adversarial probes and
hand-made edge cases, for GPT-2, domainlm BPEs with each digit policy and a Llama-3 / cl100k-style
Split-regex BPE; everything it cannot reproduce falls back to `tokenizers` with a reason."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from domainlm.assets import SAMPLE_DOMAINS, reference_tokenizer, sample_corpus
from domainlm.tokenizer import fast_bpe
from domainlm.tokenizer.bpe_probes import SURROGATES, adversarial_texts
from domainlm.tokenizer.fast_bpe import (
    TiktokenEncoder,
    TokenizersEncoder,
    build_encoder,
    build_fast_encoder,
    check_fast_encoder,
    replace_surrogates,
)
from domainlm.tokenizer.load import byte_decoder
from domainlm.tokenizer.train import train_tokenizer
from tests.tokenizer.conftest import shipped_texts, small_config

CL100K_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def corpus_texts() -> list[str]:
    texts = []
    for domain in SAMPLE_DOMAINS:
        with gzip.open(sample_corpus(domain), "rt", encoding="utf-8") as handle:
            texts += [json.loads(line)["text"] for line in handle]
    return texts


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return Tokenizer.from_file(str(reference_tokenizer("gpt2") / "tokenizer.json"))


@pytest.fixture(scope="module")
def domain_bpe(corpora_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """`domainlm tokenizer train`'s BPE: Digits(individual_digits) + ByteLevel, specials first."""
    out = tmp_path_factory.mktemp("fast") / "bpe"
    train_tokenizer(small_config(corpora_dir, vocab_size=2000, split_digits=True), out)
    return Tokenizer.from_file(str(out / "tokenizer.json"))


def _trained(corpora_dir: Path, tmp: pytest.TempPathFactory, digits: str) -> Tokenizer:
    out = tmp.mktemp(f"fast-{digits}") / "bpe"
    train_tokenizer(small_config(corpora_dir, vocab_size=2000, digits=digits), out)
    return Tokenizer.from_file(str(out / "tokenizer.json"))


@pytest.fixture(scope="module")
def domain_bpe_group3(corpora_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """digits="group3": Split(\\p{N}{1,3}, isolated) + ByteLevel, rewritten as one regex."""
    return _trained(corpora_dir, tmp_path_factory, "group3")


@pytest.fixture(scope="module")
def domain_bpe_whole(corpora_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """digits="whole": plain ByteLevel (GPT-2's regex), digit runs merged by the trainer."""
    return _trained(corpora_dir, tmp_path_factory, "whole")


@pytest.fixture(scope="module")
def cl100k_style() -> Tokenizer:
    """Llama-3's pipeline: Split(cl100k regex, isolated) + ByteLevel(use_regex=False), added specials."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CL100K_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    sample = [*shipped_texts("legal", 40), *shipped_texts("general", 20), *shipped_texts("medical", 20)]
    tokenizer.train_from_iterator(sample, trainer)
    return tokenizer


TOKENIZERS = ["gpt2", "domain_bpe", "domain_bpe_group3", "domain_bpe_whole", "cl100k_style"]


def assert_same_ids(tokenizer: Tokenizer, fast: TiktokenEncoder, texts: list[str]) -> None:
    reference = TokenizersEncoder(tokenizer).encode_batch(texts)
    for text, want, got in zip(texts, reference, fast.encode_batch(texts), strict=True):
        assert np.array_equal(want, got), f"ids differ on {text[:80]!r}"


@pytest.mark.parametrize("name", TOKENIZERS)
def test_converts_and_matches_on_probes_and_documents(name: str, request: pytest.FixtureRequest) -> None:
    tokenizer = request.getfixturevalue(name)
    fast, reason = check_fast_encoder(tokenizer)
    assert reason == "" and isinstance(fast, TiktokenEncoder)
    added = [t.content for t in tokenizer.get_added_tokens_decoder().values()]
    texts = adversarial_texts(added)
    assert len(texts) > 150 and sum(map(len, texts)) > 50_000
    assert_same_ids(tokenizer, fast, [*texts, *shipped_texts("finance", 20)])


@pytest.mark.slow
@pytest.mark.parametrize("name", TOKENIZERS)
def test_identical_ids_on_every_shipped_document(name: str, request: pytest.FixtureRequest) -> None:
    tokenizer = request.getfixturevalue(name)
    fast = build_fast_encoder(tokenizer)
    texts = corpus_texts()
    assert len(texts) == 1495 and sum(map(len, texts)) > 16_000_000
    assert_same_ids(tokenizer, fast, texts)


def test_special_token_strings_become_their_ids(gpt2: Tokenizer, cl100k_style: Tokenizer) -> None:
    ids = build_fast_encoder(gpt2).encode_batch(
        ["a<|endoftext|>b", "<|endoftext|", "<|endoftext|><|endoftext|>"]
    )
    assert [a.tolist() for a in ids] == [[64, 50256, 65], [27, 91, 437, 1659, 5239, 91], [50256, 50256]]
    begin = cl100k_style.token_to_id("<|begin_of_text|>")
    assert build_fast_encoder(cl100k_style).encode_batch(["<|begin_of_text|>"])[0].tolist() == [begin]


def test_surrogates_get_one_policy_in_both_encoders(gpt2: Tokenizer) -> None:
    with pytest.raises(TypeError):  # why a policy is needed: tokenizers refuses such a str
        gpt2.encode_batch_fast(["a\ud800b"])
    fast, reference = build_fast_encoder(gpt2), TokenizersEncoder(gpt2)
    texts = list(SURROGATES)
    assert replace_surrogates("x\ud83d\ude00y\ud800") == "x\U0001f600y\ufffd"
    expected = [gpt2.encode(replace_surrogates(t), add_special_tokens=False).ids for t in texts]
    assert [a.tolist() for a in fast.encode_batch(texts)] == expected
    assert [a.tolist() for a in reference.encode_batch(texts)] == expected


def test_threads_keep_document_order(gpt2: Tokenizer) -> None:
    texts = [*shipped_texts("legal", 30), "", "x" * 5000, *shipped_texts("medical", 30)]
    single = TiktokenEncoder(build_fast_encoder(gpt2).encoding, None, num_threads=1).encode_batch(texts)
    threaded = build_fast_encoder(gpt2, num_threads=2).encode_batch(texts)
    assert all(np.array_equal(a, b) for a, b in zip(single, threaded, strict=True))
    assert [a.dtype for a in threaded[:2]] == [np.uint32, np.uint32]


def _byte_vocab(first_id: int = 0) -> dict[str, int]:
    return {char: first_id + byte for char, byte in byte_decoder().items()}


def test_ids_not_in_merge_order_are_mapped_back() -> None:
    """Merge results with falling ids: tiktoken ranks are renumbered and mapped back to the ids."""
    vocab = _byte_vocab(first_id=10)
    vocab.update({"he": 5, "Ġt": 3, "Ġthe": 1, "the": 2})
    merges = [("h", "e"), ("Ġ", "t"), ("Ġt", "he"), ("t", "he")]
    tokenizer = Tokenizer(models.BPE(vocab, merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    fast = build_fast_encoder(tokenizer)
    assert fast is not None and fast.id_of_rank is not None
    assert_same_ids(tokenizer, fast, ["the theme, then the end", *adversarial_texts()[:40]])


def test_a_merge_tiktoken_would_take_early_is_caught() -> None:
    """'abc' is made by a + bc, but 'ab' ranks first: tokenizers stops at ab + c, tiktoken would join."""
    vocab = _byte_vocab()
    vocab.update({"ab": 256, "bc": 257, "abc": 258})
    tokenizer = Tokenizer(models.BPE(vocab, [("a", "b"), ("b", "c"), ("a", "bc")]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert tokenizer.encode("abc").tokens == ["ab", "c"]
    fast, reason = check_fast_encoder(tokenizer)
    assert fast is None and reason.startswith("tiktoken's ids differ from tokenizers' on")


def test_caller_probe_texts_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the built-in probes emptied, only the caller's texts can show the difference."""
    monkeypatch.setattr(fast_bpe, "_CHECKED", {})
    monkeypatch.setattr(fast_bpe, "adversarial_texts", lambda added: [])
    monkeypatch.setattr(fast_bpe, "token_texts", lambda tokenizer: [])
    vocab = _byte_vocab()
    vocab.update({"xy": 256, "yz": 257, "xyz": 258})
    tokenizer = Tokenizer(models.BPE(vocab, [("x", "y"), ("y", "z"), ("x", "yz")]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert check_fast_encoder(tokenizer, ["plain text"])[0] is not None
    assert check_fast_encoder(tokenizer, ["plain text", "xyz"]) == (
        None,
        "tiktoken's ids differ from tokenizers' on 'xyz'",
    )


def _tiny_bpe(**options) -> Tokenizer:
    """Bytes plus 'he', 'Ġt', 'Ġthe', 'the' and an <|endoftext|> special: converts as it is."""
    vocab = _byte_vocab()
    vocab.update({"he": 256, "Ġt": 257, "Ġthe": 258, "the": 259})
    tokenizer = Tokenizer(models.BPE(vocab, [("h", "e"), ("Ġ", "t"), ("Ġt", "he"), ("t", "he")], **options))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.add_special_tokens(["<|endoftext|>"])
    return tokenizer


def test_tiny_bpe_converts() -> None:
    fast = build_fast_encoder(_tiny_bpe())
    assert fast is not None and fast.id_of_rank is None  # ids in merge order: tiktoken ranks are the ids
    assert fast.encode_batch(["the<|endoftext|> the"])[0].tolist() == [259, 260, 258]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda t: setattr(t, "normalizer", normalizers.NFC()), r'normalizer \{"type": "NFC"\} is set'),
        (lambda t: t.add_tokens([AddedToken("<mask>", lstrip=True)]), "added token '<mask>' with lstrip"),
        (lambda t: t.add_tokens([AddedToken("zz", single_word=True)]), "added token 'zz' with single_word"),
        (lambda t: t.add_special_tokens(["<|endoftext|>x"]), "added tokens .* start alike"),
        (lambda t: t.add_tokens(["|>x"]), r"added tokens '<\|endoftext\|>' and '\|>x' overlap"),
        (
            lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.ByteLevel(add_prefix_space=True)),
            "add_prefix_space=True",
        ),
        (
            lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Whitespace()),
            "pre-tokenizer Whitespace is not byte-level",
        ),
        (
            lambda t: setattr(
                t, "pre_tokenizer", pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
            ),
            r"pre-tokenizer ByteLevel \(ByteLevel use_regex=False\)",
        ),
        (
            lambda t: setattr(
                t,
                "pre_tokenizer",
                pre_tokenizers.Sequence(
                    [
                        pre_tokenizers.Split(" ", "removed"),
                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                    ]
                ),
            ),
            "Split with a literal string pattern",
        ),
        (lambda t: t.enable_truncation(512), "truncation .* is set"),
        (lambda t: setattr(t, "encode_special_tokens", True), "encode_special_tokens=True"),
    ],
)
def test_what_does_not_convert_says_why(change, reason: str) -> None:
    tokenizer = _tiny_bpe()
    change(tokenizer)
    fast, why = check_fast_encoder(tokenizer)
    assert fast is None
    assert re.search(reason, why), why


def test_bpe_options_that_do_not_convert() -> None:
    vocab = _byte_vocab()
    for options, reason in [
        ({"dropout": 0.1}, "BPE dropout=0.1"),
        ({"byte_fallback": True}, "BPE byte_fallback=True"),
        ({"continuing_subword_prefix": "##"}, "BPE continuing_subword_prefix='##'"),
    ]:
        tokenizer = Tokenizer(models.BPE(dict(vocab), [], **options))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        assert check_fast_encoder(tokenizer) == (None, reason)
    tokenizer = Tokenizer(models.BPE({c: i for i, c in enumerate("abc")}, []))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert check_fast_encoder(tokenizer) == (None, "the vocabulary lacks 253 of the 256 byte tokens")


def test_unigram_and_wordpiece_keep_tokenizers(unigram_dir: Path) -> None:
    bert = Tokenizer.from_file(str(reference_tokenizer("bert-base-uncased") / "tokenizer.json"))
    assert check_fast_encoder(bert) == (None, "model WordPiece (only BPE converts)")
    unigram = Tokenizer.from_file(str(unigram_dir / "tokenizer.json"))
    assert check_fast_encoder(unigram) == (None, "model Unigram (only BPE converts)")
    encoder = build_encoder(unigram)
    assert isinstance(encoder, TokenizersEncoder) and encoder.name == "tokenizers"
    assert encoder.reason == "model Unigram (only BPE converts)"
    assert encoder.encode_batch(["res judicata"])[0].tolist() == unigram.encode("res judicata").ids


def test_build_encoder_names_the_encoder(gpt2: Tokenizer) -> None:
    assert build_encoder(gpt2).name == "tiktoken"


def test_encoding_releases_the_gil(gpt2: Tokenizer) -> None:
    """A pure-Python thread keeps counting while a long document encodes, so the batch threads can
    use every core. Were the GIL held, the counter would move only in the switch interval (5 ms)
    around the call: well under 10% of its pace for a call of a second or so."""
    import threading
    import time

    fast = build_fast_encoder(gpt2)
    text = " ".join(shipped_texts("legal", 40)) * 4
    count, stop = [0], threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        before, started = count[0], time.perf_counter()
        time.sleep(0.2)  # the counter's own pace, on this (shared) machine
        pace = (count[0] - before) / (time.perf_counter() - started)
        before, started = count[0], time.perf_counter()
        fast.encode(text)
        during, seconds = count[0] - before, time.perf_counter() - started
    finally:
        stop.set()
        thread.join()
    assert seconds > 0.05 and during > 0.1 * pace * seconds, (during, pace, seconds)
