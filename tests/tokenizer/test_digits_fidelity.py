"""Issue 16's coverage report: digit policies, round-trip fidelity, words worse than the baseline,
and a vocabulary that stops short of --vocab-size. Real text (the shipped legal sample) and
hand-counted adversarial strings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from domainlm.assets import reference_tokenizer
from domainlm.cli import tokenizer as tokenizer_cli
from domainlm.errors import ConfigError, DataError
from domainlm.tokenizer.config import TrainConfig
from domainlm.tokenizer.coverage import build_coverage_report, load_corpus_sample, more_tokens_than_baseline
from domainlm.tokenizer.fidelity import digit_policy_costs, lost_characters, round_trip
from domainlm.tokenizer.load import load_tokenizer
from domainlm.tokenizer.report import _metric_rows, headlines, render_markdown
from domainlm.tokenizer.train import build_pipeline, build_trainer, train_tokenizer

from .conftest import shipped_texts, write_jsonl

LEGAL = {"name": "legal", "paths": ["legal"]}


def _pre_tokens(digits: str, text: str) -> list[str]:
    config = TrainConfig.model_validate({"digits": digits, "corpora": [LEGAL]})
    return [piece for piece, _ in build_pipeline(config).pre_tokenizer.pre_tokenize_str(text)]


def test_each_digit_policy_cuts_digit_runs_as_documented() -> None:
    text = "v1234567 2004"
    assert _pre_tokens("single", text) == ["v", *"1234567", "Ġ", *"2004"]
    assert _pre_tokens("group3", text) == ["v", "123", "456", "7", "Ġ", "200", "4"]  # cl100k's \p{N}{1,3}
    assert _pre_tokens("whole", text) == ["v", "1234567", "Ġ2004"]


def test_split_digits_is_an_alias_and_conflicts_are_errors() -> None:
    assert TrainConfig.model_validate({"corpora": [LEGAL]}).digits == "single"
    assert TrainConfig.model_validate({"split_digits": True, "corpora": [LEGAL]}).digits == "single"
    config = TrainConfig.model_validate({"split_digits": False, "corpora": [LEGAL]})
    assert config.digits == "whole" and "split_digits" not in config.model_dump()
    with pytest.raises(ValueError, match="split_digits=false .* conflicts with digits=group3"):
        TrainConfig.model_validate({"split_digits": False, "digits": "group3", "corpora": [LEGAL]})
    with pytest.raises(ValueError, match="split_digits must be true or false, got 'yes'"):
        TrainConfig.model_validate({"split_digits": "yes", "corpora": [LEGAL]})
    with pytest.raises(ValueError, match="digits=group3 is for bpe only"):
        TrainConfig.model_validate({"model": "unigram", "digits": "group3", "corpora": [LEGAL]})
    with pytest.raises(ValueError, match="digits"):
        TrainConfig.model_validate({"digits": "pairs", "corpora": [LEGAL]})


def test_cli_digit_flags(corpora_dir: Path) -> None:
    legal = f"legal={corpora_dir / 'legal.jsonl'}"
    flags = {"digits": tokenizer_cli._digit_flags("group3", None), "special_tokens": {}}
    assert tokenizer_cli.build_train_config(None, [], [legal], [], flags).digits == "group3"
    assert tokenizer_cli._digit_flags(None, False) == "whole"
    with pytest.raises(ConfigError, match="--no-split-digits .* conflicts with --digits group3"):
        tokenizer_cli._digit_flags("group3", False)
    with pytest.raises(ConfigError, match="digits"):
        tokenizer_cli.build_train_config(None, [], [legal], [], {"digits": "pairs", "special_tokens": {}})
    sets = ["split_digits=false"]  # older YAML / --set spelling
    assert tokenizer_cli.build_train_config(None, sets, [legal], [], {"special_tokens": {}}).digits == "whole"


@pytest.mark.parametrize(
    ("original", "decoded", "unk", "want"),
    [
        ("The Cat", "the cat", None, {"case": 2}),
        ("a\n\nb", "a b", None, {"whitespace": 2}),  # one newline became a space, one was dropped
        ("café Straße", "cafe strasse", None, {"accents": 1, "case": 1, "other": 1}),
        ("res dög x", "res [UNK] x", "[UNK]", {"other": 3}),
        ("judicata, (a)", "judicata , ( a )", None, {}),  # inserted spaces change no original character
        ("same text", "same text", None, {}),
        ("cut short", "cut", None, {"whitespace": 1, "other": 5}),
    ],
)
def test_lost_characters_on_adversarial_strings(
    original: str, decoded: str, unk: str | None, want: dict
) -> None:
    assert dict(lost_characters(original, decoded, unk)) == want


@pytest.fixture(scope="module")
def legal_texts() -> list[str]:
    return shipped_texts("legal", 40)


def test_round_trip_on_legal_text_gpt2_lossless_bert_lowercases(legal_texts: list[str]) -> None:
    def fidelity(name: str) -> dict:
        tok = load_tokenizer(reference_tokenizer(name), name=name)
        encodings = tok.tokenizer.encode_batch(legal_texts, add_special_tokens=False)
        return round_trip(tok, legal_texts, [np.asarray(e.ids) for e in encodings])

    assert fidelity("gpt2") == {
        "lossless": True, "lossy_docs": 0, "lossy_doc_share": 0.0, "lost_char_share": 0.0,
        "lost_chars_by_kind": {"case": 0.0, "accents": 0.0, "whitespace": 0.0, "other": 0.0},
        "fidelity_chars_compared": 0,
    }  # fmt: skip
    bert = fidelity("bert-base-uncased")
    chars = sum(map(len, legal_texts))
    upper = sum(ch.isupper() for text in legal_texts for ch in text)
    assert bert["lossy_docs"] == 40 and bert["fidelity_chars_compared"] == chars == 319_836
    # The capital letters of the legal text are the case changes (within 3 characters of 319,836:
    # an accented capital counts as an accent change).
    assert bert["lost_chars_by_kind"]["case"] == pytest.approx(upper / chars, abs=1e-5)
    assert 0.11 < bert["lost_char_share"] < 0.14 and bert["lost_chars_by_kind"]["whitespace"] > 0.005


def test_digit_policy_costs_count_runs() -> None:
    metrics = [{"tokenizer": "t", "tokens": 20, "digit_tokens": 5, "digit_token_share": 0.25}]
    cost = digit_policy_costs(["in 2004 and 1234567", "v2, not x"], metrics)
    assert (cost["digit_runs"], cost["single"], cost["group3"]) == (3, 12, 6)  # 4+7+1 / 2+3+1
    assert cost["per_tokenizer"]["t"] == {
        "as_trained": 5, "tokens": 20, "digit_token_share": 0.25, "tokens_if_single": 27, "tokens_if_group3": 21,
    }  # fmt: skip


@pytest.fixture(scope="module")
def legal_report(bpe_dir: Path, tmp_path_factory: pytest.TempPathFactory, legal_texts: list[str]) -> dict:
    corpus = write_jsonl(tmp_path_factory.mktemp("legal") / "legal.jsonl", legal_texts)
    tokenizers = [("gpt2", reference_tokenizer("gpt2")), ("bert", reference_tokenizer("bert-base-uncased")),
                  ("domain", bpe_dir)]  # fmt: skip
    return build_coverage_report(tokenizers, [("legal", corpus)], top_words=10)


def test_lossy_tokenizer_is_never_crowned(legal_report: dict) -> None:
    rows = {m["tokenizer"]: m for m in legal_report["metrics"]}
    assert rows["bert"]["tokens"] < rows["gpt2"]["tokens"] and not rows["bert"]["lossless"]
    (line,) = headlines(legal_report)
    assert (
        line.startswith("legal: bert needs ")
        and ", but it is lossy: decode(encode(text)) changes 100%" in line
    )
    assert line.endswith("among lossless tokenizers, gpt2 (baseline) needs the fewest tokens.")
    html_rows = {row[1]: row for row in _metric_rows(legal_report)}
    assert "bert (lossy)" in html_rows and not any(
        "best" in cell for cell in html_rows["bert (lossy)"][2:6] + html_rows["bert (lossy)"][9:10]
    )
    assert "best" in html_rows["gpt2"][2]  # fertility: the best among lossless tokenizers


def test_words_where_the_domain_tokenizer_loses_include_numbers(legal_report: dict, bpe_dir: Path) -> None:
    worse = legal_report["fragmented_words"]["legal"]["more_tokens_than_baseline"]["domain"]
    assert worse and all(w["extra_tokens"] > 0 for w in worse)
    assert all(len(w["baseline_pieces"]) < len(w["pieces"]) for w in worse)
    # Words with digits are candidates too: digits="single" spends 2 tokens on " 10" where GPT-2 spends 1.
    sample = load_corpus_sample("legal", Path(legal_report["corpora"][0]["path"]), 0, 0)
    loaded = [
        load_tokenizer(reference_tokenizer("gpt2"), name="gpt2"),
        load_tokenizer(bpe_dir, name="domain"),
    ]
    every = {w["word"]: w for w in more_tokens_than_baseline(loaded, sample, "gpt2", 10_000)["domain"]}
    assert every["10"] == {
        "word": "10",
        "count": 21,
        "pieces": ["1", "0"],
        "baseline_pieces": [" 10"],
        "extra_tokens": 21,
    }
    domain = next(m for m in legal_report["metrics"] if m["tokenizer"] == "domain")
    policy = legal_report["digit_policy"]["legal"]
    assert domain["digit_tokens"] == policy["single"] and policy["group3"] < policy["single"]
    text = render_markdown(legal_report)
    assert (
        "## Digit policy: what numbers cost" in text and "#### legal: where domain needs more tokens" in text
    )


def test_vocab_shortfall_is_in_manifest_and_summary(tmp_path: Path, caplog) -> None:
    texts = shipped_texts("legal", 3)
    corpus = write_jsonl(tmp_path / "tiny.jsonl", texts)
    data = {"vocab_size": 100_000, "corpora": [{"name": "tiny", "paths": [str(corpus)]}]}
    with pytest.raises(
        DataError, match=r"--vocab-size 100000: the bpe trainer found only [\d,]+ tokens .*; lower"
    ):
        train_tokenizer(TrainConfig.model_validate(data), tmp_path / "no")
    # What the text supports, from the library itself; then ask for 5% more: a warning, not an error.
    library = build_pipeline(TrainConfig.model_validate(data))
    library.train_from_iterator(texts, build_trainer(TrainConfig.model_validate(data)))
    reached = library.get_vocab_size()
    wanted = int(reached * 1.05)
    with caplog.at_level(logging.WARNING):
        manifest = train_tokenizer(
            TrainConfig.model_validate({**data, "vocab_size": wanted}), tmp_path / "tok"
        )
    assert f"--vocab-size {wanted}: the bpe trainer found only {reached} tokens" in caplog.text
    short = json.loads((tmp_path / "tok" / "manifest.json").read_text())["vocab_shortfall"]
    assert short == manifest["vocab_shortfall"] and manifest["requested_vocab_size"] == wanted
    assert (short["requested"], short["reached"], short["share"]) == (
        wanted,
        reached,
        round(reached / wanted, 4),
    )
    assert short["fix"] == f"lower --vocab-size to {reached} or less, or train on more text"
    with tokenizer_cli.console.capture() as captured:
        tokenizer_cli._print_train_summary(manifest, tmp_path / "tok")
    summary = " ".join(captured.get().split())
    assert f"vocab {reached:,} of {wanted:,} requested" in summary and "lower --vocab-size to" in summary
