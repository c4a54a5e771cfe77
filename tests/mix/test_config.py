from pathlib import Path

import pytest

from domainlm.errors import ConfigError
from domainlm.mix.config import MixConfig, apply_flags, load_mix_config, target_ratios
from tests.mix import DATA_MIXES

SHIPPED = sorted(DATA_MIXES.glob("*.yaml"))


def test_the_three_sample_mixes_ship():
    assert {p.name for p in SHIPPED} >= {"finance_51_49.yaml", "legal_50_50.yaml", "medical_60_40.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_mix_loads_with_paths_relative_to_the_yaml(path):
    config = load_mix_config(path)
    assert abs(sum(target_ratios(config)) - 1) < 1e-9  # source ratios, or phases (finance_anneal)
    for source in config.sources.values():
        assert all(Path(p).is_file() for p in source.paths)
    assert Path(config.tokenizer, "tokenizer.json").is_file()


def _yaml(tmp_path, text):
    path = tmp_path / "mix.yaml"
    path.write_text(text)
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    return path


GOOD = """
sources:
  a: {paths: a.jsonl, ratio: 0.7}
  b: {paths: [a.jsonl], ratio: 0.3, max_repeats: 2}
total_tokens: 50M
seq_len: 256
"""


def test_defaults_counts_and_relative_paths(tmp_path):
    config = load_mix_config(_yaml(tmp_path, GOOD))
    assert config.total_tokens == 50_000_000
    assert config.sources["a"].paths == [str(tmp_path / "a.jsonl")]
    assert config.sources["b"].max_repeats == 2
    assert (config.val_fraction, config.seed, config.shard_tokens) == (0.01, 0, 100_000_000)


def test_set_overrides_then_flags(tmp_path):
    config = load_mix_config(_yaml(tmp_path, GOOD), ["sources.a.ratio=0.6", "sources.b.ratio=0.4", "seed=5"])
    assert config.sources["a"].ratio == 0.6
    assert config.seed == 5
    flagged = apply_flags(config, "mix.yaml", seed=9, total_tokens="all", seq_len=None, out="rel/out")
    assert (flagged.seed, flagged.total_tokens, flagged.seq_len) == (9, "all", 256)
    assert flagged.out == str(Path.cwd() / "rel" / "out")  # flags are relative to the cwd


def test_set_paths_are_relative_to_the_cwd_and_yaml_names_stay_shipped(tmp_path, monkeypatch):
    from domainlm.assets import reference_tokenizer, sample_corpus

    path = _yaml(tmp_path, GOOD + "tokenizer: gpt2\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = load_mix_config(path, ["sources.b.paths=[mine/*.jsonl, finance]", "out=built"])
    assert config.sources["a"].paths == [str(tmp_path / "a.jsonl")]  # from the YAML: beside it
    assert config.sources["b"].paths == [
        str(tmp_path / "elsewhere" / "mine" / "*.jsonl"),
        str(sample_corpus("finance")),
    ]
    assert config.out == str(tmp_path / "elsewhere" / "built")
    assert config.tokenizer == str(reference_tokenizer("gpt2"))


def test_two_sources_with_one_name_are_refused(tmp_path):
    text = "sources:\n  a: {paths: a.jsonl, ratio: 0.5}\n  b: {paths: a.jsonl, ratio: 0.3}\n  a: {paths: a.jsonl, ratio: 0.5}\n"
    with pytest.raises(ConfigError, match=r"mix\.yaml: sources\.a: duplicate key at lines 2 and 4"):
        load_mix_config(_yaml(tmp_path, text))


def test_tokenizer_flag_takes_the_shipped_shortcut(tmp_path):
    from domainlm.assets import reference_tokenizer

    config = load_mix_config(_yaml(tmp_path, GOOD), [])
    assert apply_flags(config, "mix.yaml", tokenizer="gpt2").tokenizer == str(reference_tokenizer("gpt2"))
    mine = tmp_path / "tok"
    assert apply_flags(config, "mix.yaml", tokenizer=str(mine)).tokenizer == str(mine)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (["sources.a.ratio=0.8"], r"sources: ratios sum to 1\.1 \(a 0\.8 \+ b 0\.3\), not 1"),
        (["sources.a.ratio=-0.3", "sources.b.ratio=1.3"], r"sources\.a\.ratio: -0\.3 is negative"),
        (["sources.a.paths=[]"], r"sources\.a\.paths: no paths"),
        (["sources.b.max_repeats=0.5"], r"sources\.b\.max_repeats: 0\.5 is below 1"),
        (["val_fraction=1.5"], r"val_fraction: 1\.5 must be in \[0, 1\)"),
        (["sources.a.val_fraction=-1"], r"sources\.a\.val_fraction: -1\.0 must be in \[0, 1\)"),
        (["seq_len=0"], r"seq_len: 0 must be a positive"),
        (["total_tokens=100"], r"total_tokens: 100 is less than one sequence of seq_len 256"),
        (["total_tokens=lots"], r"total_tokens: .*expected a count such as 50M.*or `all`"),
        (["shard_tokens=10"], r"shard_tokens: 10 is less than seq_len"),
        (["sources.a.ratoi=1"], r"sources\.a\.ratoi: unknown key"),
        (["sources.a.ratio=abc"], r"sources\.a\.ratio: "),
    ],
)
def test_validation_errors_name_the_field(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        load_mix_config(_yaml(tmp_path, GOOD), override)


def test_bad_source_name_and_no_sources(tmp_path):
    path = _yaml(tmp_path, "sources:\n  'a b': {paths: a.jsonl, ratio: 1}\n")
    with pytest.raises(ConfigError, match="sources.a b: name 'a b' must be letters"):
        load_mix_config(path)
    with pytest.raises(ConfigError, match="sources: no sources"):
        load_mix_config(_yaml(tmp_path, "sources: {}\n"))
    with pytest.raises(ConfigError, match="sources: required field is missing"):
        load_mix_config(_yaml(tmp_path, "seq_len: 8\n"))


def test_all_problems_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_mix_config(_yaml(tmp_path, GOOD), ["seq_len=-1", "sources.b.max_repeats=0"])
    assert "seq_len: -1" in str(info.value) and "max_repeats: 0" in str(info.value)


def test_flag_errors_are_checked_too(tmp_path):
    config = load_mix_config(_yaml(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="seq_len: 0 must be a positive"):
        apply_flags(config, "mix.yaml", seq_len=0)
    assert isinstance(config, MixConfig)
