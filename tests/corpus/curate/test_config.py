import pytest

from domainlm.corpus.curate.config import (
    DEFAULT_CONFIG_PATH,
    GOPHER_WEB_CONFIG_PATH,
    CurateConfig,
    load_curate_config,
)
from domainlm.errors import ConfigError


def test_default_yaml_equals_builtin_defaults():
    assert load_curate_config(DEFAULT_CONFIG_PATH) == CurateConfig()


def test_gopher_web_yaml_has_published_thresholds():
    config = load_curate_config(GOPHER_WEB_CONFIG_PATH)
    assert config.filters.rules.top_ngrams.max_char_fraction == {2: 0.20, 3: 0.18, 4: 0.16}
    assert config.filters.rules.duplicate_ngrams.max_char_fraction[5] == 0.15
    assert config.filters.rules.duplicate_ngrams.max_char_fraction[10] == 0.10
    assert config.near_dedup == CurateConfig().near_dedup


def test_set_overrides_and_rows():
    config = load_curate_config(None, ["near_dedup.threshold=0.5", "near_dedup.bands=32"])
    assert config.near_dedup.threshold == 0.5
    assert config.near_dedup.rows == 4


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("near_dedup.threshold=1.5", r"near_dedup\.threshold: Input should be less than or equal to 1"),
        ("near_dedup.threshold=-0.1", r"near_dedup\.threshold: Input should be greater than or equal to 0"),
        ("near_dedup.bands=10", r"bands \(10\) must divide num_perm \(128\)"),
        ("filters.rules.word_count.min_words=200000", r"min_words \(200000\) is above max_words"),
        ("filters.rules.mean_word_length.min_chars=20", r"min_chars \(20\.0\) is above max_chars"),
        ("filters.rules.alpha_words.min_fraction=2", r"alpha_words\.min_fraction"),
        (
            "filters.rules.top_ngrams.max_char_fraction={2: 1.5}",
            r"fraction 1\.5 for 2-grams must be in \[0, 1\]",
        ),
        (
            "filters.rules.duplicate_ngrams.max_char_fraction={40: 0.1}",
            r"n-gram size 40 must be in \[1, 32\]",
        ),
        (
            "filters.rules.perplexity={enabled: true}",
            r"unknown rule\(s\) perplexity; known rules: word_count",
        ),
        ("near_dedup.treshold=0.7", r"near_dedup\.treshold: unknown key"),
        ("normalize.unicode_form=NFD", r"normalize\.unicode_form"),
        ("exact_dedup.digest_bytes=4", r"exact_dedup\.digest_bytes"),
        (
            "decontaminate.ngram_words=2",
            r"decontaminate\.ngram_words: Input should be greater than or equal to 3",
        ),
        (
            "decontaminate.min_overlap=0",
            r"decontaminate\.min_overlap: Input should be greater than or equal to 1",
        ),
        ("decontaminate.enabled=true", r"decontaminate\.enabled: unknown key"),
        (
            "paragraph_dedup.min_words=0",
            r"paragraph_dedup\.min_words: Input should be greater than or equal to 1",
        ),
        (
            "paragraph_dedup.digest_bytes=64",
            r"paragraph_dedup\.digest_bytes: Input should be less than or equal to 32",
        ),
        ("paragraph_dedup.enabled=maybe", r"paragraph_dedup\.enabled: Input should be a valid boolean"),
    ],
)
def test_invalid_config_is_one_config_error(override, match):
    with pytest.raises(ConfigError, match=match):
        load_curate_config(None, [override])


def test_bad_yaml_file_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("near_dedup:\n  threshold: 2\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: near_dedup\.threshold"):
        load_curate_config(path)


def test_source_filters_merge_over_global_filters():
    config = load_curate_config(
        None,
        [
            "filters.rules.word_count.min_words=10",
            "source_filters.icd.rules.duplicate_ngrams.enabled=false",
        ],
    )
    icd = config.filters_for("icd")
    assert icd.rules.duplicate_ngrams.enabled is False
    assert icd.rules.word_count.min_words == 10  # inherited from the global filters
    assert config.filters_for("other") is config.filters
    with pytest.raises(ConfigError, match=r"source_filters\.icd\.rules: Value error, unknown rule"):
        load_curate_config(None, ["source_filters.icd.rules.nope.enabled=false"])


def test_a_rule_can_be_switched_off_alone():
    config = load_curate_config(None, ["filters.rules.duplicate_ngrams.enabled=false"])
    assert config.filters.rules.duplicate_ngrams.enabled is False
    assert config.filters.rules.duplicate_ngrams.max_char_fraction[5] == 0.45


def test_duplicate_key_and_non_utf8_yaml_are_one_line_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("near_dedup:\n  threshold: 0.8\n  bands: 16\n  threshold: 0.5\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: near_dedup\.threshold: duplicate key at lines 2 and 4"):
        load_curate_config(path)
    path.write_bytes(b"redact:\n  enabled: \xff\n")
    with pytest.raises(
        ConfigError, match=r"c\.yaml: not UTF-8 text \(byte 0xff at offset 19\); save the file"
    ):
        load_curate_config(path)


def test_reference_paths_resolve_against_the_yaml_folder(tmp_path):
    path = tmp_path / "sub" / "c.yaml"
    path.parent.mkdir()
    path.write_text(
        "decontaminate:\n  references: [eval/a.jsonl]\n  ngram_words: 8\nparagraph_dedup: {enabled: true}\n"
    )
    config = load_curate_config(path)
    assert config.decontaminate.references == [str(tmp_path / "sub" / "eval" / "a.jsonl")]
    assert config.decontaminate.ngram_words == 8 and config.decontaminate.min_overlap == 1
    assert config.paragraph_dedup.enabled and config.paragraph_dedup.min_words == 10
