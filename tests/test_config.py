import os
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import field_validator

from domainlm.assets import reference_tokenizer, sample_corpus
from domainlm.config import (
    ConfigPath,
    ConfigPathList,
    CorpusPathList,
    OverridesFor,
    StrictModel,
    TokenizerPath,
    apply_overrides,
    load_config,
    parse_count,
    read_yaml,
    resolve_cli_path,
    resolve_yaml_path,
)
from domainlm.errors import ConfigError


class Train(StrictModel):
    lr: float = 3e-4
    steps: int = 10


class Recipe(StrictModel):
    name: str = "x"
    train: Train = Train()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("50M", 50_000_000), ("1.5B", 1_500_000_000), ("2k", 2000), (4e6, 4_000_000), ("7", 7)],
)
def test_parse_count(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize("bad", ["fifty", "-3", "1.5", True])
def test_parse_count_rejects(bad):
    with pytest.raises(ConfigError, match="count"):
        parse_count(bad, "total_tokens")


def test_yaml_then_overrides_with_yaml_typed_values(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: legal\ntrain:\n  lr: 4e-4\n")  # PyYAML reads 4e-4 as a string; pydantic coerces
    recipe = load_config(Recipe, path, ["train.steps=99"])
    assert recipe.train.lr == pytest.approx(4e-4) and recipe.train.steps == 99 and recipe.name == "legal"


def test_unknown_key_names_dotted_path(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: train\.lrr: unknown key"):
        load_config(Recipe, path)


def test_bad_type_and_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.steps"):
        load_config(Recipe, None, ["train.steps=many"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["train.steps"])
    with pytest.raises(ConfigError, match="is a value or a list, not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])
    with pytest.raises(ConfigError, match="is a value or a list, not a section"):
        apply_overrides({"mix_overrides": ["a=1"]}, ["mix_overrides.0=2"])
    with pytest.raises(ConfigError, match="file not found"):
        load_config(Recipe, tmp_path / "missing.yaml")


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train:\n  lr: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Recipe, path)


def test_resolve_yaml_and_cli_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yaml_file = tmp_path / "conf" / "r.yaml"
    assert resolve_yaml_path("data/a.jsonl", yaml_file) == tmp_path / "conf" / "data" / "a.jsonl"
    assert resolve_yaml_path("../a.jsonl", yaml_file) == tmp_path / "a.jsonl"
    assert resolve_yaml_path("/abs/a.jsonl", yaml_file).as_posix() == "/abs/a.jsonl"
    assert resolve_cli_path("out/mix") == tmp_path / "out" / "mix"
    assert resolve_cli_path("/abs/x").as_posix() == "/abs/x"


class Source(StrictModel):
    paths: CorpusPathList
    weight: float = 1.0

    @field_validator("paths", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value):  # as the mix config does: a single path is resolved too
        return [value] if isinstance(value, str) else value


class Data(StrictModel):
    mix: ConfigPath
    extra: ConfigPathList = []
    tokenizer: TokenizerPath | None = None
    note: str = "x"  # not a path: never rewritten


class Job(StrictModel):
    data: Data
    out: ConfigPath | None = None
    sources: dict[str, Source] = {}
    stages: list[Data] = []


def _job_yaml(tmp_path: Path) -> Path:
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "job.yaml"
    path.write_text(
        "data: {mix: ../mixes/m, extra: [a.txt, /abs/b.txt], tokenizer: tok, note: rel/x}\n"
        "out: runs/one\n"
        "sources:\n  fin: {paths: [finance, fin/*.jsonl]}\n  one: {paths: single.txt}\n"
        "stages:\n  - {mix: s1}\n  - {mix: ~/s2}\n"
    )
    return path


def test_yaml_paths_are_relative_to_the_yaml_file_nested_and_in_lists(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the cwd plays no part in paths written in the YAML
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    job = load_config(Job, _job_yaml(tmp_path))
    conf = tmp_path / "configs"
    assert job.data.mix == str(tmp_path / "mixes" / "m")
    assert job.data.extra == [str(conf / "a.txt"), "/abs/b.txt"]
    assert job.data.tokenizer == str(conf / "tok")
    assert job.data.note == "rel/x"
    assert job.out == str(conf / "runs" / "one")
    assert job.sources["fin"].paths == [str(sample_corpus("finance")), str(conf / "fin" / "*.jsonl")]
    assert job.sources["one"].paths == [str(conf / "single.txt")]
    assert [s.mix for s in job.stages] == [str(conf / "s1"), str(tmp_path / "home" / "s2")]


def test_set_paths_are_relative_to_the_cwd(tmp_path, monkeypatch):
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    overrides = [
        "data.mix=demo_out/mix",  # the README's demo: --set data.mix=demo_out/mix
        "data.extra=[x.txt]",
        "out=runs/two",
        "sources.fin.paths=[mine.jsonl]",
        "sources.new={paths: [n.jsonl]}",
        "stages=[{mix: st}]",
        "data.note=a/b",
    ]
    job = load_config(Job, _job_yaml(tmp_path), overrides)
    assert job.data.mix == str(cwd / "demo_out" / "mix")
    assert job.data.extra == [str(cwd / "x.txt")]
    assert job.out == str(cwd / "runs" / "two")
    assert job.sources["fin"].paths == [str(cwd / "mine.jsonl")]
    assert job.sources["new"].paths == [str(cwd / "n.jsonl")]
    assert job.sources["one"].paths == [str(tmp_path / "configs" / "single.txt")]  # untouched: YAML
    assert [s.mix for s in job.stages] == [str(cwd / "st")]
    assert job.data.note == "a/b"
    # no YAML at all: --set values only
    assert load_config(Job, None, ["data.mix=m"]).data.mix == str(cwd / "m")


class Outer(StrictModel):
    """Carries `key=value` overrides for Job, as a recipe's data.mix_overrides carries the mix YAML's."""

    job_overrides: Annotated[list[str], OverridesFor(lambda: Job)] = []


def test_overrides_for_another_config_resolve_where_they_are_written(tmp_path, monkeypatch):
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    folder = tmp_path / "outer"
    folder.mkdir()
    (folder / "o.yaml").write_text(
        "job_overrides: ['data.mix=m', 'sources.a={paths: [p.txt], weight: 2}', 'data.note=n/x', 'no-equals']\n"
    )
    written = load_config(Outer, folder / "o.yaml").job_overrides
    assert written == [
        f'data.mix="{folder / "m"}"',
        f'sources.a={{"paths": ["{folder / "p.txt"}"], "weight": 2}}',
        "data.note=n/x",  # no path in it: kept as written
        "no-equals",  # not an override: applying it reports the problem
    ]
    job = load_config(Job, None, written[:3])  # applied later from anywhere: the paths stay the file's
    assert (job.data.mix, job.sources["a"].paths, job.sources["a"].weight) == (
        str(folder / "m"),
        [str(folder / "p.txt")],
        2,
    )
    typed = load_config(Outer, folder / "o.yaml", ['job_overrides=["data.mix=m"]']).job_overrides
    assert typed == [f'data.mix="{cwd / "m"}"']  # a --set is typed by the user: relative to the cwd


def test_shipped_names_stay_names_unless_a_path_of_that_name_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "job.yaml"
    path.write_text("data: {mix: m, tokenizer: gpt2}\nsources: {a: {paths: [legal, general]}}\n")
    job = load_config(Job, path, ["sources.b.paths=medical"])
    assert job.data.tokenizer == str(reference_tokenizer("gpt2"))
    assert job.sources["a"].paths == [str(sample_corpus("legal")), str(sample_corpus("general"))]
    assert job.sources["b"].paths == [str(sample_corpus("medical"))]
    assert load_config(Job, path, ["data.tokenizer=gpt2"]).data.tokenizer == str(reference_tokenizer("gpt2"))
    (tmp_path / "gpt2").mkdir()  # a folder of that name beside the YAML wins over the shipped one
    (tmp_path / "legal").write_text("{}")
    job = load_config(Job, path)
    assert job.data.tokenizer == str(tmp_path / "gpt2")
    assert job.sources["a"].paths[0] == str(tmp_path / "legal")
    # a name that is not shipped is a relative path like any other
    assert load_config(Job, path, ["data.tokenizer=gpt3"]).data.tokenizer == str(tmp_path / "gpt3")


def test_validation_error_format_is_file_dotted_key_message(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("data: {mix: m, mixx: 2}\nsources: {a: {paths: [x], weight: heavy}}\n")
    with pytest.raises(ConfigError, match=r"^\S*job\.yaml: data\.mixx: unknown key.*; sources\.a\.weight: "):
        load_config(Job, path)
    with pytest.raises(ConfigError, match=r"job\.yaml: data\.mix: Input should be a valid string"):
        load_config(Job, path, ["data.mixx=null", "data={mix: 3}"])


def test_duplicate_keys_are_refused_with_key_and_lines(tmp_path):
    path = tmp_path / "mix.yaml"
    path.write_text(
        "sources:\n  finance:\n    paths: [a]\n  general:\n    paths: [b]\n  finance:\n    paths: [c]\n"
    )
    with pytest.raises(ConfigError, match=r"mix\.yaml: sources\.finance: duplicate key at lines 2 and 6; "):
        read_yaml(path)
    path.write_text("seed: 1\nseed: 2\n")
    with pytest.raises(ConfigError, match=r"mix\.yaml: seed: duplicate key at lines 1 and 2"):
        load_config(Job, path)
    path.write_text("stages: [{mix: a, mix: b}]\n")
    with pytest.raises(ConfigError, match=r"stages\.0\.mix: duplicate key at lines 1 and 1"):
        read_yaml(path)
    path.write_text("base: &b {mix: a}\ndata: {<<: *b, mix: c}\n")  # a merge key may be overridden
    assert read_yaml(path)["data"] == {"mix": "c"}


def test_non_utf8_yaml_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("data: {mix: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(
        ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte 0xe9 at offset 15\); save the file as UTF-8$"
    ):
        load_config(Job, path)
    path.write_bytes("\ufeffdata: {mix: caf\xe9}\n".encode())  # UTF-8 with a byte-order mark is fine
    assert load_config(Job, path).data.mix == os.path.join(tmp_path, "caf\xe9")


def test_a_bad_count_names_the_file_and_the_dotted_key(tmp_path):
    """Counts are parsed inside validators; the error still carries `file: section.key:` (one format)."""
    from domainlm.pretrain.config import load_recipe
    from domainlm.tokenizer.config import TrainConfig

    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {mix: m}\ntrain: {global_batch_sequences: 2, total_tokens: lots}\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: train\.total_tokens: .*expected a count such as 50M"):
        load_recipe(recipe)
    tok = tmp_path / "t.yaml"
    tok.write_text("corpora: [{name: legal, paths: [legal]}]\nmax_train_bytes: many\n")
    with pytest.raises(ConfigError, match=r"t\.yaml: max_train_bytes: .*expected a count"):
        load_config(TrainConfig, tok)
