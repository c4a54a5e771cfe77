"""Each quality rule on a crafted document, plus the measurements behind the rules, by hand."""

import pytest

from domainlm.corpus.curate.config import FiltersConfig, RulesConfig
from domainlm.corpus.curate.filters import (
    QualityFilter,
    TextView,
    duplicate_block_fractions,
    ngram_char_fractions,
)


@pytest.fixture(scope="module")
def quality():
    return QualityFilter(FiltersConfig())


@pytest.fixture(scope="module")
def clean(paragraphs):
    return "\n\n".join(paragraphs[:3])


def test_clean_prose_passes_every_rule(quality, paragraphs):
    assert all(quality.check(p) is None for p in paragraphs)


def test_rule_order_matches_config():
    assert QualityFilter(FiltersConfig()).rule_names == list(RulesConfig.model_fields)


def _rule(quality, text):
    verdict = quality.check(text)
    return verdict.rule if verdict else None


def test_word_count_bounds(quality, clean):
    assert _rule(quality, "Too short to be a document, but English.") == "word_count"
    verdict = QualityFilter(FiltersConfig(rules={"word_count": {"max_words": 100}})).check(clean)
    assert verdict.rule == "word_count" and verdict.detail.endswith("words > 100")


def test_mean_word_length(quality, clean):
    long_words = " ".join(["pneumonoultramicroscopicsilicovolcanoconiosis", "the", "of"] * 30)
    assert _rule(quality, long_words) == "mean_word_length"
    short_words = " ".join(["a b c to of d e f"] * 10)
    assert _rule(quality, short_words) == "mean_word_length"


def test_symbol_word_ratio_hashes_and_ellipses(quality, clean):
    words = clean.split()
    hashed = " ".join(w if i % 5 else "#" + w for i, w in enumerate(words))  # 1 '#' per 5 words
    verdict = quality.check(hashed)
    assert verdict.rule == "symbol_word_ratio" and "'#' per word" in verdict.detail
    dotted = " ".join(w if i % 5 else w + "..." for i, w in enumerate(words))
    assert "ellipses per word" in quality.check(dotted).detail


def test_alpha_words(quality, clean):
    numbers = clean + " " + " ".join(str(1000 + i) for i in range(200))
    assert _rule(quality, numbers) == "alpha_words"


def test_stop_words(quality):
    german = " ".join(
        [
            "Die",
            "Lizenz",
            "gewährt",
            "jedem",
            "Nutzer",
            "dieses",
            "Werkes",
            "weltweit",
            "ein",
            "einfaches",
            "Nutzungsrecht",
        ]
        * 6
    )
    verdict = quality.check(german)
    assert verdict.rule == "stop_words" and verdict.detail == "0 stop words < 2"


def test_bullet_lines(quality, paragraphs):
    bullets = "\n".join("- " + p for p in paragraphs[:10])
    assert _rule(quality, bullets) == "bullet_lines"
    assert _rule(quality, "Intro line here.\n" + "\n".join("* " + p for p in paragraphs[:5])) is None


def test_ellipsis_lines(quality, paragraphs):
    lines = "\n".join(p + ("..." if i % 2 else "") for i, p in enumerate(paragraphs[:10]))
    verdict = quality.check(lines)
    assert verdict.rule == "ellipsis_lines" and verdict.detail.startswith("0.500 of lines")


def test_duplicate_lines(quality, paragraphs):
    lines = paragraphs[:6] + [paragraphs[0], paragraphs[1], paragraphs[2]]  # 3 of 9 lines repeat
    verdict = quality.check("\n".join(lines))
    assert verdict.rule == "duplicate_lines" and verdict.detail.startswith("0.333 of lines are duplicates")


def test_duplicate_paragraphs(paragraphs):
    only = QualityFilter(FiltersConfig(rules={"duplicate_lines": {"enabled": False}}))
    text = "\n\n".join(paragraphs[:4] + [paragraphs[0], paragraphs[1]])  # 2 of 6 paragraphs repeat
    verdict = only.check(text)
    assert verdict.rule == "duplicate_paragraphs" and verdict.detail.startswith("0.333 of paragraphs")


def test_top_ngrams(quality, paragraphs):
    # "cheap loans" x60 after a paragraph: the top 2-gram covers 10*60/len of the text (< 0.60) but
    # the top 3-gram "cheap loans cheap" 15*59/len (> 0.54): charged to the 3-gram limit.
    spam = paragraphs[0] + " " + " ".join(["cheap loans"] * 60)
    top3 = 15 * 59 / len(spam)
    verdict = quality.check(spam)
    assert top3 > 0.54 and 10 * 60 / len(spam) < 0.60
    assert (
        verdict.rule == "top_ngrams"
        and verdict.detail == f"top 3-gram covers {top3:.3f} of characters > 0.54"
    )


def test_duplicate_ngrams(quality, paragraphs):
    looped = " ".join(paragraphs[0].split()[:20] * 12) + " " + paragraphs[1]  # 220 of ~320 words repeat
    verdict = quality.check(looped)
    assert verdict.rule == "duplicate_ngrams" and verdict.detail.startswith("duplicate 5-grams")


def test_disabled_rules_and_filters():
    assert QualityFilter(FiltersConfig(enabled=False)).check("x") is None
    no_count = QualityFilter(FiltersConfig(rules={"word_count": {"enabled": False}}))
    assert "word_count" not in no_count.rule_names


def test_duplicate_block_fractions_by_hand():
    # blocks: ab, cd, ab, ab -> 2 of 4 repeat; repeated chars 2+2 of 8
    assert duplicate_block_fractions(["ab", "cd", "ab", "ab"]) == (0.5, 0.5)
    assert duplicate_block_fractions([]) == (0.0, 0.0)


def test_ngram_fractions_by_hand():
    # words: a bb a bb a (text length 12). 2-grams: "a bb" x2, "bb a" x2 -> top = (1+2)*2/12 = 0.5.
    # Repeats of an earlier 2-gram start at positions 2 ("a bb") and 3 ("bb a"): they cover words
    # 2..4 = a, bb, a -> 4 characters / 12.
    view = TextView("a bb a bb a ")
    top, dup = ngram_char_fractions(view, 2)
    assert top == pytest.approx(0.5)
    assert dup == pytest.approx(4 / 12)
    assert ngram_char_fractions(TextView("one two"), 3) == (0.0, 0.0)
    assert ngram_char_fractions(TextView("x y z w"), 2) == (0.0, 0.0)  # nothing repeats


def test_duplicate_ngram_coverage_shrinks_with_n(paragraphs):
    # The early exit in the duplicate_ngrams rule relies on this.
    looped = " ".join(paragraphs[0].split()[:30] * 3) + " " + paragraphs[2]
    for text in (looped, paragraphs[0], "a b a b c a b c d a b c d e"):
        fractions = [ngram_char_fractions(TextView(text), n)[1] for n in range(1, 12)]
        assert fractions == sorted(fractions, reverse=True)
