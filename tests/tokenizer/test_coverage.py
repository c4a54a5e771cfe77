from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from domainlm.errors import ConfigError, DataError
from domainlm.tokenizer.coverage import (
    build_coverage_report,
    load_corpus_sample,
    pieces_per_word,
    read_terms,
    word_spans,
)
from domainlm.tokenizer.resolve import resolve_corpus, resolve_terms, resolve_tokenizer

from .conftest import write_jsonl


@pytest.fixture(scope="module")
def hand_report(hand_inputs: dict[str, Path]) -> dict:
    return build_coverage_report(
        [("small", hand_inputs["small"]), ("big", hand_inputs["big"])],
        [("hand", hand_inputs["corpus"])],
        [("terms", hand_inputs["terms"])],
        baseline="small",
        top_words=3,
    )


def test_metrics_match_hand_counts(hand_report: dict) -> None:
    small, big = hand_report["metrics"]
    # doc 1 "the cats sat on the mat.": 6 words; the|cat ##s|sat|on|the|mat . = 8 tokens, 2 words split.
    # doc 2 "res judicata, dög": 3 words; res|jud ##ic ##ata ,|[UNK] = 6 tokens, 1 word split, 1 unknown.
    assert (small["words"], small["tokens"], small["bytes"], small["chars"]) == (9, 14, 42, 41)
    assert small["fertility"] == round(14 / 9, 6)
    assert small["bytes_per_token"] == 3.0 and small["chars_per_token"] == round(41 / 14, 6)
    assert small["split_word_share"] == round(3 / 9, 6)
    assert small["unk_rate"] == round(1 / 14, 6) and small["byte_fallback_rate"] == 0.0
    assert small["vocab_used"] == 13 and small["vocab_used_share"] == round(13 / 14, 6)  # "a" never used
    # "cats" and "judicata" are whole tokens in `big`: 7 + 4 = 11 tokens; "mat." and "judicata," still split.
    assert (big["tokens"], big["split_word_share"]) == (11, round(2 / 9, 6))
    assert big["tokens_vs_baseline"] == round(11 / 14, 6) and big["context_gain"] == round(14 / 11, 6)
    assert small["tokens_vs_baseline"] == 1.0


def test_fragmented_words_are_ranked_by_extra_tokens(hand_report: dict) -> None:
    frag = hand_report["fragmented_words"]["hand"]
    assert frag["ranked_by"] == "small"
    top = [(w["word"], w["count"], w["pieces"]["small"], w["pieces"]["big"]) for w in frag["words"]]
    assert top == [
        ("judicata", 1, ["jud", "##ic", "##ata"], ["judicata"]),  # 1 x (3 - 1) = 2 extra tokens
        ("cats", 1, ["cat", "##s"], ["cats"]),  # 1 extra
        ("dög", 1, ["[UNK]"], ["[UNK]"]),  # then 0 extra, alphabetical
    ]
    assert frag["per_tokenizer"]["big"][0]["extra_tokens"] == 0


def test_terms_pieces_and_summary(hand_report: dict) -> None:
    (terms,) = hand_report["terms"]
    assert terms["num_terms"] == 2  # blank line, comment and the repeated "cats" dropped
    rows = {r["term"]: r["pieces"] for r in terms["terms"]}
    assert rows["res judicata"] == {"small": ["res", "jud", "##ic", "##ata"], "big": ["res", "judicata"]}
    assert terms["summary"]["small"] == {"mean_pieces": 3.0, "pieces_per_word": 2.0, "fragmented_share": 1.0}
    assert terms["summary"]["big"] == {"mean_pieces": 1.5, "pieces_per_word": 1.0, "fragmented_share": 0.0}


def test_byte_level_fallback_and_pieces_on_gpt2(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", ["Hello world 日本"])
    report = build_coverage_report([resolve_tokenizer("gpt2")], [("c", corpus)], top_words=3)
    (m,) = report["metrics"]
    # Hello | Ġworld | then " 日本" is 6 bytes in 5 byte-level tokens, none a whole character.
    assert (m["words"], m["tokens"], m["byte_fallback_rate"]) == (3, 7, round(5 / 7, 6))
    words = {w["word"]: w["pieces"]["gpt2"] for w in report["fragmented_words"]["c"]["words"]}
    assert words["Hello"] == [" Hello"]


def test_word_spans_match_str_split() -> None:
    for text in ["", "  a bb\u3000ccc\u00a0d\n", "x", "a\u2028b\x1cc"]:
        starts, ends = word_spans(text)
        assert [text[s:e] for s, e in zip(starts, ends, strict=True)] == text.split()


def test_pieces_per_word_counts_overlaps() -> None:
    starts, ends = np.array([0, 4, 10]), np.array([3, 9, 12])
    # tokens: [0,3) one word; [3,6) space+start of word 2; [6,9); [9,11) spans the gap into word 3; [11,12).
    offsets = np.array([[0, 3], [3, 6], [6, 9], [9, 11], [11, 12], [5, 5]])
    assert pieces_per_word(offsets, starts, ends).tolist() == [1, 2, 2]


def test_shipped_shortcuts_resolve() -> None:
    assert resolve_tokenizer("gpt2")[1].joinpath("tokenizer.json").is_file()
    assert resolve_corpus("legal")[1].name == "legal.jsonl.gz"
    assert resolve_terms("medical-abbreviations")[1].name == "medical_abbreviations.json"
    assert resolve_tokenizer("mine=some/dir") == ("mine", Path("some/dir"))
    assert len(read_terms(*resolve_terms("medical-abbreviations"))) > 3000


def test_sampling_is_seeded_and_keeps_file_order(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", [f"document {i:02d}" for i in range(50)])
    first = load_corpus_sample("c", corpus, sample_docs=5, seed=1)
    again = load_corpus_sample("c", corpus, sample_docs=5, seed=1)
    other = load_corpus_sample("c", corpus, sample_docs=5, seed=2)
    assert first.texts == again.texts != other.texts
    assert len(first.texts) == 5 and first.texts == sorted(first.texts) and first.total_documents == 50
    assert len(load_corpus_sample("c", corpus, sample_docs=0, seed=1).texts) == 50


def test_bad_inputs_fail_with_one_line_errors(hand_inputs: dict[str, Path], tmp_path: Path) -> None:
    tok, corpus = ("t", hand_inputs["small"]), ("c", hand_inputs["corpus"])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# only a comment\n")
    with pytest.raises(DataError, match="empty.txt: the term list is empty"):
        build_coverage_report([tok], [corpus], [("e", empty)])
    with pytest.raises(DataError, match="nope: no such file or directory"):
        build_coverage_report([("x", tmp_path / "nope")], [corpus])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(
        DataError, match=r"tokenizer .*broken/tokenizer.json: not valid JSON \(Expecting property name"
    ):
        build_coverage_report([("b", broken)], [corpus])
    with pytest.raises(DataError, match="missing.jsonl: no such file or directory"):
        build_coverage_report([tok], [("m", tmp_path / "missing.jsonl")])
    with pytest.raises(ConfigError, match="--baseline zzz: not one of the tokenizers"):
        build_coverage_report([tok], [corpus], baseline="zzz")
    with pytest.raises(ConfigError, match="name 't' is used twice"):
        build_coverage_report([tok, tok], [corpus])


def test_truncation_in_tokenizer_json_does_not_cut_documents(tmp_path: Path) -> None:
    import shutil

    from tokenizers import Tokenizer

    folder = tmp_path / "gpt2_trunc"
    shutil.copytree(resolve_tokenizer("gpt2")[1], folder)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.enable_truncation(max_length=2)
    tok.save(str(folder / "tokenizer.json"))
    corpus = write_jsonl(tmp_path / "c.jsonl", ["Hello world 日本"])
    report = build_coverage_report([("t", folder)], [("c", corpus)])
    assert report["metrics"][0]["tokens"] == 7
