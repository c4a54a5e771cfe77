"""seq_len has one owner (the recipe's data.seq_len) and the tokenizer must be the mix's: every silent
mismatch of the old pipeline is now one line, raised by `prepare_run` before anything is built or started."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from domainlm.errors import ConfigError, DataError
from domainlm.outputs import write_marker
from domainlm.pretrain.config import ModelConfig
from domainlm.pretrain.dry_run import dry_run_report
from domainlm.pretrain.model import TokenIds, build_model
from domainlm.pretrain.run import prepare_run
from tests.pretrain.conftest import TINY_RECIPE
from tests.pretrain.tiny import build_tokenizer, read_docs


def _recipe(tmp_path: Path, data: dict, **sections) -> Path:
    path = tmp_path / "recipes" / "r.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({**TINY_RECIPE, **sections, "data": data}))
    return path


# ------------------------------------------------------------------------------------------- seq_len


def test_recipe_seq_len_against_a_reused_built_mix(tiny_data, mix_yaml, tmp_path):
    """Before: a mix YAML already built into build_dir was reused whatever seq_len the recipe asked for."""
    build_dir = tmp_path / "built"
    shutil.copytree(tiny_data[1], build_dir)  # built with seq_len 64
    recipe = _recipe(tmp_path, {"mix": str(mix_yaml), "build_dir": str(build_dir), "seq_len": 128})
    with pytest.raises(
        ConfigError,
        match=r"^seq_len 128 \(data\.seq_len in .*r\.yaml\) != seq_len 64 \(the mix .*built/manifest\.json\); "
        r".*set data\.build_dir to a new folder, or set data\.seq_len: 64$",
    ):
        prepare_run(recipe, out=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"^seq_len 128 \(--set data\.seq_len\) != seq_len 64"):
        prepare_run(recipe, ["data.seq_len=128"], out=tmp_path / "run")
    prepared = prepare_run(recipe, ["data.seq_len=64"], out=tmp_path / "run")
    assert prepared.seq_len.value == 64 and not prepared.inputs.needs_build


def test_the_mix_built_in_the_run_dir_must_match_unless_started_over(tiny_data, mix_yaml, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_marker(run_dir, "pretrain")
    shutil.copytree(tiny_data[1], run_dir / "mix")
    recipe = _recipe(tmp_path, {"mix": str(mix_yaml), "seq_len": 32})
    with pytest.raises(ConfigError, match=r"seq_len 32 .* != seq_len 64 .*start over with --overwrite"):
        prepare_run(recipe, out=run_dir)
    prepared = prepare_run(recipe, out=run_dir, overwrite=True)  # the old mix goes with the run dir
    assert prepared.inputs.needs_build and prepared.inputs.mix_config.seq_len == 32


def test_seq_len_in_mix_overrides_is_refused(mix_yaml, tmp_path):
    """Before: `mix_overrides: [seq_len=128]` was the way; a second owner of seq_len is now an error."""
    recipe = _recipe(tmp_path, {"mix": str(mix_yaml), "mix_overrides": ["seq_len=128"]})
    with pytest.raises(ConfigError, match=r"data\.mix_overrides sets 'seq_len=128'.*set data\.seq_len: 128"):
        prepare_run(recipe, out=tmp_path / "run")


def test_paths_in_mix_overrides_follow_the_recipe_file_and_in_a_set_the_cwd(mix_yaml, tmp_path, monkeypatch):
    """Written in the recipe, data.mix_overrides' paths are relative to the recipe (they followed the cwd)."""
    (tmp_path / "corpora").mkdir()
    for name in ("more", "other"):
        shutil.copy(mix_yaml.parent / "legal.jsonl", tmp_path / "corpora" / f"{name}.jsonl")
    overrides = [
        "sources.legal.paths=[../corpora/more.jsonl]",
        "sources.general={paths: [../corpora/other.jsonl], ratio: 0.5}",
        "total_tokens=2000",
    ]
    recipe = _recipe(tmp_path, {"mix": str(mix_yaml), "mix_overrides": overrides})  # in tmp_path/recipes
    work = tmp_path / "elsewhere" / "work"  # where ../corpora is another folder than from recipes/
    (work / "corpora").mkdir(parents=True)
    shutil.copy(mix_yaml.parent / "legal.jsonl", work / "corpora" / "typed.jsonl")
    monkeypatch.chdir(work)
    prepared = prepare_run(recipe, out=tmp_path / "run")
    sources = prepared.inputs.mix_config.sources
    assert sources["legal"].paths == [str(tmp_path / "corpora" / "more.jsonl")]
    assert sources["general"].paths == [str(tmp_path / "corpora" / "other.jsonl")]
    assert prepared.inputs.mix_config.total_tokens == 2000
    assert prepared.recipe.data.mix_overrides[2] == "total_tokens=2000"  # no path in it: kept as written
    # The run dir's recipe.yaml holds them absolute, so a resume from another directory reads the same.
    assert (
        f'sources.legal.paths=["{tmp_path / "corpora" / "more.jsonl"}"]' in prepared.recipe.data.mix_overrides
    )
    typed = ['data.mix_overrides=["sources.legal.paths=[corpora/typed.jsonl]"]']  # typed by the user: cwd
    prepared = prepare_run(recipe, typed, out=tmp_path / "run2")
    assert prepared.inputs.mix_config.sources["legal"].paths == [str(work / "corpora" / "typed.jsonl")]


def test_mix_overrides_with_a_mix_directory_are_refused(tiny_data, tmp_path):
    """Before: they were silently ignored (a built mix cannot change)."""
    recipe = _recipe(tmp_path, {"mix": str(tiny_data[1]), "mix_overrides": ["total_tokens=2M"]})
    with pytest.raises(ConfigError, match=r"data\.mix_overrides \['total_tokens=2M'\] .* already built mix"):
        prepare_run(recipe, out=tmp_path / "run")


def test_recipe_seq_len_against_a_mix_directory(tiny_data, tmp_path):
    recipe = _recipe(tmp_path, {"mix": str(tiny_data[1]), "seq_len": 128})
    with pytest.raises(ConfigError, match=r"seq_len 128 .* != seq_len 64 .*`domainlm mix --seq-len 128`"):
        prepare_run(recipe, out=tmp_path / "run")
    assert prepare_run(recipe, ["data.seq_len=null"], out=tmp_path / "run").seq_len.value == 64


def test_a_mix_yaml_is_built_with_the_recipe_seq_len(mix_yaml, tmp_path):
    recipe = _recipe(tmp_path, {"mix": str(mix_yaml), "seq_len": 32})
    prepared = prepare_run(recipe, out=tmp_path / "run")
    assert prepared.inputs.needs_build and prepared.inputs.mix_config.seq_len == 32  # the YAML says 64
    assert prepared.seq_len.source.startswith("data.seq_len in ")
    unset = prepare_run(_recipe(tmp_path, {"mix": str(mix_yaml)}), out=tmp_path / "run")
    assert unset.seq_len.value == 64 and unset.seq_len.source == f"the mix YAML {mix_yaml}"


def _save_llama(path: Path, max_positions: int) -> Path:
    ids = TokenIds(vocab_size=384, eos_token_id=3, pad_token_id=0, bos_token_id=2)
    model = build_model(ModelConfig(hidden_size=32, num_layers=1, num_heads=2), ids, max_positions, seed=0)
    model.save_pretrained(path)
    return path


def test_init_from_context_shorter_than_seq_len(tiny_data, tmp_path):
    """Before: never checked; positions past the checkpoint's context failed (or wrapped) inside the ranks."""
    base = _save_llama(tmp_path / "base", max_positions=32)
    recipe = _recipe(tmp_path, {"mix": str(tiny_data[1])}, model={"arch": "llama", "init_from": str(base)})
    with pytest.raises(
        ConfigError,
        match=r"model\.init_from .*base: context 32 \(max_position_embeddings of .*config\.json\) < seq_len 64 "
        r"\(the mix .*manifest\.json\); lower data\.seq_len to <= 32",
    ):
        prepare_run(recipe, out=tmp_path / "run")
    _save_llama(tmp_path / "long", max_positions=64)
    prepare_run(recipe, [f"model.init_from={tmp_path / 'long'}"], out=tmp_path / "run")


def test_model_positions_shorter_than_seq_len(tiny_data, tmp_path):
    recipe = _recipe(tmp_path, {"mix": str(tiny_data[1])})
    with pytest.raises(ConfigError, match=r"model\.max_position_embeddings 32 < seq_len 64 \(the mix "):
        prepare_run(recipe, ["model.max_position_embeddings=32"], out=tmp_path / "run")


# ----------------------------------------------------------------------------------------- tokenizer


def test_same_size_other_tokenizer_is_refused(tiny_data, tmp_path):
    """Before: only `vocab >= manifest vocab` was checked, so this trained silently on the wrong ids."""
    from domainlm.tokenizer.load import load_tokenizer

    other = build_tokenizer(tmp_path / "other", read_docs("general", 24, 4000)[::-1])
    assert load_tokenizer(other).vocab_size == load_tokenizer(tiny_data[0]).vocab_size == 384
    recipe = _recipe(tmp_path, {"mix": str(tiny_data[1]), "tokenizer": str(other)})
    with pytest.raises(DataError, match=r"fingerprint"):
        prepare_run(recipe, out=tmp_path / "run")


def test_other_eos_id_is_refused(tiny_data, tmp_path):
    """The same vocabulary with another EOS: the shards separate documents with </s> (id 3), not <s>."""
    other = tmp_path / "other_eos"
    shutil.copytree(tiny_data[0], other)
    config_path = other / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["eos_token"] = "<s>"
    config_path.write_text(json.dumps(config))
    recipe = _recipe(tmp_path, {"mix": str(tiny_data[1]), "tokenizer": str(other)})
    with pytest.raises(DataError, match=r"(?i)eos"):
        prepare_run(recipe, out=tmp_path / "run")


def test_tokenizer_larger_than_the_mix_vocabulary_is_refused(tiny_data, tmp_path):
    """Before: accepted (vocab >= manifest vocab)."""
    from transformers import AutoTokenizer

    extended = AutoTokenizer.from_pretrained(tiny_data[0])
    extended.add_tokens(["judicata", "estoppel"])
    extended.save_pretrained(tmp_path / "extended")
    recipe = _recipe(tmp_path, {"mix": str(tiny_data[1]), "tokenizer": str(tmp_path / "extended")})
    with pytest.raises(DataError, match=r"386.*384|384.*386"):
        prepare_run(recipe, out=tmp_path / "run")


def test_the_mix_tokenizer_is_the_default_and_sizes_the_model(tiny_data, tiny_recipe, tmp_path):
    prepared = prepare_run(tiny_recipe, out=tmp_path / "run")
    assert Path(prepared.inputs.tokenizer.path).resolve() == Path(tiny_data[0]).resolve()
    assert prepared.inputs.tokenizer.vocab_size == 384 and prepared.inputs.tokenizer.eos_token_id == 3


# ------------------------------------------------------------------------------- resolve, then build


def test_a_bad_batch_is_found_before_the_mix_is_built(mix_yaml, tmp_path):
    """Before: prepare_run tokenized the whole mix, then found that the batch did not divide."""
    recipe = _recipe(tmp_path, {"mix": str(mix_yaml)})
    with pytest.raises(ConfigError, match="global batch of 7 sequences is not divisible"):
        prepare_run(recipe, ["train.global_batch_sequences=7"], out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("flag", "value"), [("num_gpus", 0), ("num_nodes", 0)])
def test_zero_processes_or_nodes_are_refused(tiny_recipe, tmp_path, flag, value):
    """Before: `--num-gpus 0` was falsy, so the recipe's value was used silently."""
    name = "--" + flag.replace("_", "-")
    with pytest.raises(ConfigError, match=rf"^{name} 0: must be at least 1"):
        prepare_run(tiny_recipe, out=tmp_path / "run", **{flag: value})


def test_dry_run_reports_seq_len_tokens_per_step_and_their_sources(tiny_data, tiny_recipe, tmp_path):
    report = dry_run_report(prepare_run(tiny_recipe, out=tmp_path / "run"))
    manifest = Path(tiny_data[1]) / "manifest.json"
    assert report["seq_len"] == {"value": 64, "source": f"the mix {manifest}"}
    assert report["tokens_per_step"] == {
        "value": 512,
        "source": "train.global_batch_sequences 8 x seq_len 64",
    }
    assert report["tokenizer"]["vocab_size"] == 384 and report["tokenizer"]["eos_token_id"] == 3
    assert report["mix"]["built"] and report["max_steps"] == 30
    tokens = prepare_run(
        tiny_recipe,
        ["data.seq_len=64", "train.global_batch_sequences=null", "train.global_batch_tokens=500"],
        out=tmp_path / "run",
    )
    assert dry_run_report(tokens)["tokens_per_step"] == {
        "value": 512,
        "source": "train.global_batch_tokens 500 rounded up to 8 sequences x seq_len 64",
    }
    assert tokens.seq_len.source == "--set data.seq_len"
    assert not (tmp_path / "run").exists()


def test_the_mix_is_built_after_resolving_with_the_recipe_seq_len(mix_yaml, tmp_path):
    from domainlm.mix.manifest import open_mix
    from domainlm.pretrain.run import write_run_files

    recipe = _recipe(tmp_path, {"mix": str(mix_yaml), "seq_len": 32})
    spec = write_run_files(prepare_run(recipe, out=tmp_path / "run"))
    manifest = open_mix(tmp_path / "run" / "mix")
    assert manifest.seq_len == spec.seq_len == 32 and spec.seq_len_source.startswith("data.seq_len in ")
    assert spec.mix_fingerprint == manifest.fingerprint
    assert spec.tokenizer_fingerprint == manifest.tokenizer.fingerprint
    again = prepare_run(recipe, out=tmp_path / "run")  # reused now: it has the recipe's seq_len
    assert not again.inputs.needs_build and again.seq_len.value == 32
