"""A warm re-mix builds no encoder; entries and the manifest say which encoder wrote the ids."""

import json
import shutil
from pathlib import Path

import pytest

from domainlm.errors import DataError
from domainlm.mix import build as build_module
from domainlm.mix.build import build_mix
from domainlm.mix.cache import TokenCache
from domainlm.mix.cache_entry import CACHE_FORMAT, META_NAME
from domainlm.mix.config import MixConfig
from domainlm.tokenizer.load import fingerprint_of, load_tokenizer
from tests.mix.conftest import GPT2, small_config
from tests.mix.test_cache import _files


@pytest.fixture
def corpora(small_corpora, tmp_path) -> Path:
    return Path(shutil.copytree(small_corpora, tmp_path / "corpora"))


@pytest.fixture
def builds(monkeypatch) -> list[int]:
    """One item per encoder built (splitting check + fast encoder proof)."""
    calls: list[int] = []
    real = build_module.checked_encoder

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(build_module, "checked_encoder", counting)
    return calls


def _at_60_40(config: MixConfig) -> MixConfig:
    data = config.model_dump()
    data["sources"]["fin"]["ratio"], data["sources"]["gen"]["ratio"] = 0.4, 0.6
    return MixConfig.model_validate(data)


def _metas(cache: Path) -> list[dict]:
    return [json.loads((cache / e.key / META_NAME).read_text()) for e in TokenCache(cache).entries()]


def test_warm_remix_at_a_new_ratio_builds_no_encoder(corpora, tmp_path, builds):
    cache, config = tmp_path / "cache", small_config(corpora, tmp_path / "out")
    build_mix(config, quiet=True, cache=cache)
    assert builds == [1]  # cold: built once, on the first miss, for both sources
    metas = _metas(cache)
    assert [m["encoder"] for m in metas] == ["tiktoken", "tiktoken"]
    assert all(m["format"] == CACHE_FORMAT == "domainlm.tokens/v4" for m in metas)
    assert all("encoder" not in m["inputs"] for m in metas)  # the key holds no encoder setting
    warm_config = _at_60_40(config)
    builds.clear()
    build_mix(warm_config, overwrite=True, quiet=True, cache=cache)
    assert builds == []  # every file a hit: no splitting check, no proof
    warm = _files(Path(config.out))
    assert json.loads(warm["manifest.json"])["tokenizer"]["encoder"] == "tiktoken"
    build_mix(warm_config, overwrite=True, quiet=True, cache=False)
    assert builds == [1] and _files(Path(config.out)) == warm  # --no-cache builds it: same bytes


def test_one_miss_builds_the_encoder_once(corpora, tmp_path, builds):
    cache, config = tmp_path / "cache", small_config(corpora, tmp_path / "out")
    build_mix(config, quiet=True, cache=cache)
    (corpora / "gen.jsonl").write_text((corpora / "gen.jsonl").read_text().replace("the", "a"))
    builds.clear()
    build_mix(config, overwrite=True, quiet=True, cache=cache)
    assert builds == [1]  # fin a hit, gen a miss
    warm = _files(Path(config.out))
    build_mix(config, overwrite=True, quiet=True, cache=False)
    assert _files(Path(config.out)) == warm


def test_entries_that_disagree_on_the_encoder_are_all_named(corpora, tmp_path, builds):
    """An entry from an older run that used `tokenizers` (same ids): the manifest names both, sorted."""
    cache, config = tmp_path / "cache", small_config(corpora, tmp_path / "out")
    build_mix(config, quiet=True, cache=cache)
    gen = next(e for e in TokenCache(cache).entries() if e.file.endswith("gen.jsonl"))
    meta_path = cache / gen.key / META_NAME
    meta_path.write_text(json.dumps(dict(json.loads(meta_path.read_text()), encoder="tokenizers")))
    builds.clear()
    result = build_mix(_at_60_40(config), overwrite=True, quiet=True, cache=cache)
    assert builds == [] and result.manifest["tokenizer"]["encoder"] == "tiktoken+tokenizers"
    assert [s.encoders for s in result.sources] == [["tiktoken"], ["tokenizers"]]


def test_an_entry_naming_no_valid_encoder_is_corrupt(corpora, tmp_path):
    cache, config = tmp_path / "cache", small_config(corpora, tmp_path / "out")
    build_mix(config, quiet=True, cache=cache)
    entry = TokenCache(cache).entries()[0]
    meta_path = cache / entry.key / META_NAME
    meta_path.write_text(json.dumps(dict(json.loads(meta_path.read_text()), encoder=7)))
    with pytest.raises(DataError, match=r"is corrupt \(meta\.json names no valid encoder\)"):
        build_mix(config, overwrite=True, quiet=True, cache=cache)


def test_loader_serializes_once_for_fingerprint_and_spec():
    loaded = load_tokenizer(GPT2)
    assert loaded.serialized == loaded.tokenizer.to_str()
    assert loaded.fingerprint == fingerprint_of(loaded.tokenizer, loaded.eos_token_id)
    assert loaded.model_type == "BPE" and loaded.byte_level
