from domainlm.corpus.curate.config import NormalizeConfig
from domainlm.corpus.curate.normalize import normalize_text


def test_nfc_composes_accents():
    assert normalize_text("cafe\u0301", NormalizeConfig()) == "caf\u00e9"


def test_nfkc_folds_compatibility_forms():
    assert normalize_text("\ufb01nance \uff11", NormalizeConfig(unicode_form="NFKC")) == "finance 1"


def test_controls_removed_newlines_and_tabs_kept_as_whitespace():
    raw = "a\x00b\x07c\ufeff d\u200be\r\nf\tg\x85h"
    assert normalize_text(raw, NormalizeConfig()) == "abc de\nf gh"


def test_whitespace_collapsed_and_blank_lines_capped():
    raw = "  Title  \n\n\n\n para\u00a0one   two \t\nline\n"
    assert normalize_text(raw, NormalizeConfig()) == "Title\n\npara one two\nline"


def test_disabled_is_identity():
    raw = "x\x00  y\r\n"
    assert normalize_text(raw, NormalizeConfig(enabled=False)) == raw
    assert (
        normalize_text(raw, NormalizeConfig(collapse_whitespace=False, strip_control=False)) == "x\x00  y\n"
    )
