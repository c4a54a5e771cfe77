import pytest

from domainlm.config import StrictModel, apply_overrides, load_config, parse_count, resolve_path
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


def test_relative_paths_resolve_against_the_yaml_folder(tmp_path):
    assert resolve_path("data/a.jsonl", tmp_path) == tmp_path / "data/a.jsonl"
    assert resolve_path("/abs/a.jsonl", tmp_path).as_posix() == "/abs/a.jsonl"
