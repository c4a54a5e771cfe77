import numpy as np

from domainlm.corpus.curate.config import NearDedupConfig
from domainlm.corpus.curate.dedup_exact import ExactIndex, text_digest
from domainlm.corpus.curate.dedup_near import MinHasher, NearIndex, shingles

from .conftest import change_words


def test_digest_is_stable_and_sized():
    assert text_digest("abc") == text_digest("abc")
    assert text_digest("abc") != text_digest("abd")
    assert len(text_digest("abc", 8)) == 8
    # blake2b is fixed by its spec, so digests match across processes, runs and machines.
    assert text_digest("abc", 8).hex() == "d8bb14d833d59559"


def test_exact_index_points_at_first_seen():
    index = ExactIndex()
    assert index.first_seen(text_digest("a"), "f:1") is None
    assert index.first_seen(text_digest("b"), "f:2") is None
    assert index.first_seen(text_digest("a"), "f:3") == "f:1"
    assert index.first_seen(text_digest("a"), "f:4") == "f:1"
    assert len(index) == 2


def test_shingles_lowercase_words_without_punctuation():
    assert shingles("The cat, the CAT!", 2) == {b"the cat", b"cat the"}
    assert shingles("Two words", 5) == {b"two words"}


def test_signature_jaccard_tracks_true_jaccard(paragraphs):
    hasher = MinHasher(NearDedupConfig(num_perm=256))
    a, b = paragraphs[0], change_words(paragraphs[0], 5)
    sa, sb = shingles(a, 5), shingles(b, 5)
    true = len(sa & sb) / len(sa | sb)
    estimate = float(np.mean(hasher.signature(a) == hasher.signature(b)))
    assert 0.2 < true < 0.8
    assert abs(estimate - true) < 0.12  # standard error sqrt(J(1-J)/256) ~ 0.03


def test_few_words_changed_is_a_near_duplicate_at_default_threshold(paragraphs):
    config = NearDedupConfig()
    hasher, index = MinHasher(config), NearIndex(config)
    original = paragraphs[0] + "\n\n" + paragraphs[1]
    edited = change_words(original, 3)  # each change breaks 5 shingles
    true = len(shingles(original, 5) & shingles(edited, 5)) / len(shingles(original, 5) | shingles(edited, 5))
    assert 0.7 < true < 0.9 and len(original.split()) >= 150
    assert index.first_match(hasher.signature(original), "doc:1") is None
    match = index.first_match(hasher.signature(edited), "doc:2")
    assert match is not None and match[0] == "doc:1" and match[1] >= config.threshold


def test_unrelated_documents_are_not_duplicates(paragraphs):
    config = NearDedupConfig()
    hasher, index = MinHasher(config), NearIndex(config)
    for i, text in enumerate(paragraphs):
        assert index.first_match(hasher.signature(text), f"doc:{i}") is None
    assert len(index) == len(paragraphs)


def test_cluster_keeps_first_seen_and_threshold_is_applied(paragraphs):
    strict = NearDedupConfig(threshold=0.99)
    hasher, index = MinHasher(strict), NearIndex(strict)
    base = paragraphs[1]
    assert index.first_match(hasher.signature(base), "a") is None
    assert index.first_match(hasher.signature(change_words(base, 2)), "b") is None  # below 0.99: kept
    match = index.first_match(hasher.signature(base + " "), "c")  # same shingles as "a"
    assert match == ("a", 1.0)


def test_mark_repeats_flags_verbatim_copies_only():
    from domainlm.corpus.curate.config import CurateConfig
    from domainlm.corpus.curate.process import mark_repeats
    from domainlm.corpus.readers import Document

    docs = [(i, Document(t, "s", f"f:{i}")) for i, t in enumerate(["a b", "a  b", "a b", "c", "a b"])]
    assert [r for _, _, r in mark_repeats(docs, CurateConfig())] == [False, False, True, False, True]
    off = CurateConfig(exact_dedup={"enabled": False})
    assert not any(r for _, _, r in mark_repeats(docs, off))
