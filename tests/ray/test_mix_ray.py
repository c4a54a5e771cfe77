"""`mix --executor ray`: Ray tasks (on the local head + worker cluster) tokenize every input file into
the token cache; the mix then written is the local (uncached) mix byte for byte."""

from __future__ import annotations

import os

import pytest

from domainlm.mix.build import build_mix
from domainlm.mix.cache import TokenCache
from domainlm.outputs import MARKER_NAME
from tests.mix.conftest import shipped_texts, small_config, write_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_mix_on_ray_byte_identical(ray_address, tmp_path):
    corpora = tmp_path / "corpora"
    (corpora / "gen").mkdir(parents=True)
    write_jsonl(corpora / "fin.jsonl", [t[:8000] for t in shipped_texts("finance", 20)])
    texts = [t[:6000] for t in shipped_texts("general", 40)]
    write_jsonl(corpora / "gen" / "a.jsonl", texts[:25])  # two files: two tasks for one source
    write_jsonl(corpora / "gen" / "b.jsonl", texts[25:])
    config = small_config(corpora, tmp_path / "out")  # the manifest records `out`: both runs use it
    config.sources["gen"].paths = [str(corpora / "gen")]
    build_mix(config, quiet=True, cache=False)
    os.replace(tmp_path / "out", tmp_path / "local")
    cache = tmp_path / "cache"
    result = build_mix(config, quiet=True, cache=cache, executor="ray", ray_address=ray_address)
    os.replace(tmp_path / "out", tmp_path / "ray")
    assert len(TokenCache(cache).entries()) == 3  # one entry per input file, written by the tasks
    assert sum(s.cached_files for s in result.sources) == 3  # the build read them all from the cache
    local = sorted(
        p.relative_to(tmp_path / "local")
        for p in (tmp_path / "local").rglob("*")
        if p.is_file() and p.name != MARKER_NAME
    )
    ray = sorted(
        p.relative_to(tmp_path / "ray")
        for p in (tmp_path / "ray").rglob("*")
        if p.is_file() and p.name != MARKER_NAME
    )
    assert local == ray and len(local) >= 5
    for name in local:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
