import json
import shutil

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from domainlm.assets import reference_tokenizer, sample_corpus
from domainlm.corpus import CorpusReader
from domainlm.errors import ConfigError, DataError
from domainlm.mix.encode import BatchEncoder, load_mix_tokenizer, split_text, splitting_is_exact
from domainlm.tokenizer.load import load_tokenizer

GPT2 = reference_tokenizer("gpt2")


@pytest.fixture(scope="module")
def gpt2():
    return load_tokenizer(GPT2)


def test_gpt2_dir_and_file_load_the_same(gpt2):
    assert (gpt2.eos_token, gpt2.eos_token_id, gpt2.vocab_size, gpt2.dtype) == (
        "<|endoftext|>",
        50256,
        50257,
        "uint16",
    )
    from_file = load_tokenizer(GPT2 / "tokenizer.json")
    assert from_file.fingerprint == gpt2.fingerprint
    assert gpt2.tokenizer.encode("Hello world").ids == [15496, 995]


def test_folder_without_tokenizer_json_is_converted(tmp_path, gpt2):
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2 / name, tmp_path / name)
    config = {"tokenizer_class": "GPT2Tokenizer", "eos_token": "<|endoftext|>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    loaded = load_tokenizer(tmp_path)
    assert loaded.eos_token_id == 50256
    assert loaded.tokenizer.encode("Hello world", add_special_tokens=False).ids == [15496, 995]


def test_no_eos_is_an_error_unless_set():
    bert = reference_tokenizer("bert-base-uncased")
    assert load_tokenizer(bert).eos_token_id is None  # loads; only the mix needs an EOS
    with pytest.raises(ConfigError, match="names no eos_token.*set `eos_token: <token>`"):
        load_mix_tokenizer(bert)
    assert load_mix_tokenizer(bert, eos_token="[SEP]").eos_token_id == 102
    with pytest.raises(ConfigError, match="eos_token '<nope>' is not in its vocabulary"):
        load_mix_tokenizer(bert, eos_token="<nope>")


def test_bad_tokenizer_paths(tmp_path):
    with pytest.raises(DataError, match="missing: no such file or directory; pass a folder"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(DataError, match="expected a tokenizer.json file"):
        load_tokenizer(tmp_path / "t.txt")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="not a tokenizers JSON file"):
        load_tokenizer(tmp_path / "bad.json")


def test_large_vocab_uses_uint32(tmp_path):
    vocab = {f"w{i}": i for i in range(70_000)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "w69999"}}))
    loaded = load_tokenizer(tmp_path)
    assert (loaded.vocab_size, loaded.dtype, loaded.eos_token_id) == (70_000, np.uint32, 69_999)
    tokens, lengths = BatchEncoder(loaded).encode(["w65537 w3", "w69000"])
    assert tokens.tolist() == [65_537, 3, 69_999, 69_000, 69_999]
    assert lengths.tolist() == [3, 2]


def test_split_text_cuts_only_before_newline_then_text():
    text = "aaaa\n\nbbbb\n cccc\ndddd\neeee"
    pieces = split_text(text, chunk_chars=3)
    assert "".join(pieces) == text
    assert pieces == ["aaaa\n", "\nbbbb\n cccc", "\ndddd", "\neeee"]
    assert split_text("no newline at all " * 10, chunk_chars=5) == ["no newline at all " * 10]


def test_splitting_gives_the_tokens_of_whole_documents(gpt2):
    docs = [doc.text for _, doc in zip(range(40), CorpusReader(sample_corpus("medical")), strict=False)]
    whole, whole_lengths = BatchEncoder(gpt2, split_long=False).encode(docs)
    split, split_lengths = BatchEncoder(gpt2, chunk_chars=500).encode(docs)
    assert np.array_equal(whole, split)
    assert np.array_equal(whole_lengths, split_lengths)
    assert splitting_is_exact(gpt2.tokenizer, docs[:3])
    assert (whole == gpt2.eos_token_id).sum() == len(docs)
    ends = np.cumsum(whole_lengths) - 1
    assert (whole[ends] == gpt2.eos_token_id).all()


def test_splitting_detected_as_inexact_for_metaspace_always():
    vocab = {"<unk>": 0, "\u2581a": 1, "\u2581b": 2}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    assert not splitting_is_exact(tok, [])


def test_fast_encoder_writes_the_same_tokens(gpt2):
    docs = [doc.text for _, doc in zip(range(40), CorpusReader(sample_corpus("legal")), strict=False)]
    docs += ["", "a<|endoftext|>b", "lone \ud800 surrogate"]
    fast = BatchEncoder(gpt2, chunk_chars=500, probe_texts=docs[:3])
    reference = BatchEncoder(gpt2, chunk_chars=500, fast=False)
    assert (fast.encoder_name, reference.encoder_name) == ("tiktoken", "tokenizers")
    tokens, lengths = fast.encode(docs)
    want_tokens, want_lengths = reference.encode(docs)
    assert tokens.dtype == want_tokens.dtype == np.uint16
    assert np.array_equal(tokens, want_tokens) and np.array_equal(lengths, want_lengths)
    assert fast.encode([])[0].tolist() == []
