"""The one tokenizer loader: identity (vocab size, EOS, fingerprint) and check_matches_mix."""

import json
import shutil
from pathlib import Path

import pytest

from domainlm.assets import reference_tokenizer
from domainlm.errors import DataError
from domainlm.mix.manifest import open_mix
from domainlm.testing.mixes import source_entry, write_manifest
from domainlm.tokenizer.load import check_matches_mix, load_tokenizer

GPT2 = reference_tokenizer("gpt2")


@pytest.fixture(scope="module")
def gpt2():
    return load_tokenizer(GPT2)


def _mix_of(root: Path, loaded, **fields):
    """A manifest as `domainlm mix` writes it for `loaded`, with `fields` changed."""
    facts = {"vocab_size": loaded.vocab_size, "eos_token_id": loaded.eos_token_id,
             "tokenizer": {"path": str(loaded.path), "fingerprint": loaded.fingerprint}}  # fmt: skip
    return open_mix(write_manifest(root, [source_entry("legal")], **{**facts, **fields}))


def _copy_with_swapped_ids(tmp_path: Path) -> Path:
    """GPT-2 with the ids of 'the' and 'and' exchanged: same size, same EOS, other ids."""
    spec = json.loads((GPT2 / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    vocab["the"], vocab["and"] = vocab["and"], vocab["the"]
    out = tmp_path / "swapped"
    out.mkdir()
    (out / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    shutil.copy(GPT2 / "tokenizer_config.json", out / "tokenizer_config.json")
    return out


def test_identity_of_the_shipped_tokenizers(gpt2):
    assert (gpt2.vocab_size, gpt2.eos_token, gpt2.eos_token_id, gpt2.dtype) == (
        50257,
        "<|endoftext|>",
        50256,
        "uint16",
    )
    assert load_tokenizer("gpt2").fingerprint == gpt2.fingerprint  # the shipped name loads the same folder
    assert load_tokenizer(GPT2 / "tokenizer.json").fingerprint == gpt2.fingerprint
    bert = load_tokenizer("bert-base-uncased")
    assert (bert.vocab_size, bert.eos_token_id) == (30522, None)  # BERT names no EOS; the mix sets one
    assert load_tokenizer("bert-base-uncased", eos_token="[SEP]").eos_token_id == 102


def test_fingerprint_ignores_paths_and_truncation_but_not_eos(gpt2, tmp_path):
    copy = shutil.copytree(GPT2, tmp_path / "copy")
    spec = json.loads((copy / "tokenizer.json").read_text(encoding="utf-8"))
    spec["truncation"] = {"direction": "Right", "max_length": 512, "strategy": "LongestFirst", "stride": 0}
    (copy / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    assert load_tokenizer(copy).fingerprint == gpt2.fingerprint
    assert load_tokenizer(copy, eos_token="!").fingerprint != gpt2.fingerprint


def test_matching_tokenizer_passes(gpt2, tmp_path):
    check_matches_mix(
        load_tokenizer(shutil.copytree(GPT2, tmp_path / "copy")),
        _mix_of(tmp_path / "mix", gpt2),
        "data.tokenizer",
    )


def test_same_size_other_ids_is_refused(gpt2, tmp_path):
    # Before: pretrain only checked vocab >= the manifest's, so this tokenizer trained on wrong ids.
    swapped = load_tokenizer(_copy_with_swapped_ids(tmp_path))
    assert (swapped.vocab_size, swapped.eos_token_id) == (gpt2.vocab_size, gpt2.eos_token_id)
    mix = _mix_of(tmp_path / "mix", gpt2)
    message = (
        rf"data.tokenizer {swapped.path}: tokenizer fingerprint {swapped.fingerprint[:12]} but the mix's "
        rf"{mix.path} records {gpt2.fingerprint[:12]}; use the mix's tokenizer \({GPT2}\)"
    )
    with pytest.raises(DataError, match=message):
        check_matches_mix(swapped, mix, "data.tokenizer")


def test_other_eos_id_is_refused(gpt2, tmp_path):
    other_eos = load_tokenizer(GPT2, eos_token="!")  # id 0: same vocabulary, other document separator
    mix = _mix_of(tmp_path / "mix", gpt2)
    with pytest.raises(DataError, match=rf"tokenizer EOS id 0 but the mix's {mix.path} records 50256"):
        check_matches_mix(other_eos, mix, "data.tokenizer")


def test_other_vocab_size_is_refused(gpt2, tmp_path):
    mix = _mix_of(tmp_path / "mix", gpt2)
    with pytest.raises(
        DataError, match=rf"tokenizer vocab size 30522 but the mix's {mix.path} records 50257"
    ):
        check_matches_mix(load_tokenizer("bert-base-uncased", eos_token="[SEP]"), mix, "data.tokenizer")


def test_tokenizer_json_that_is_not_json_is_one_line(tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_text('{"model": ', encoding="utf-8")
    with pytest.raises(
        DataError, match=rf"^tokenizer {folder / 'tokenizer.json'}: not valid JSON \(Expecting value"
    ):
        load_tokenizer(folder)
    (folder / "tokenizer.json").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(DataError, match="tokenizer.json: not valid JSON"):
        load_tokenizer(folder)
