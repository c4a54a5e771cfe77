"""`vocab report --corpus MIX` and `eval --data MIX` read a mix's held-out sets the same way: one corpus per
source, the same names, files and documents (domainlm.mix.manifest.held_out_texts), on a real built mix."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from domainlm.assets import reference_tokenizer, sample_corpus
from domainlm.cli.vocab import expand_corpus
from domainlm.errors import ConfigError
from domainlm.eval.data import read_domain, resolve_data_specs
from domainlm.mix.build import build_mix
from domainlm.mix.config import MixConfig
from domainlm.mix.manifest import open_mix
from domainlm.tokenizer.coverage import load_corpus_sample


def _shipped(domain: str, num_docs: int, max_chars: int) -> list[str]:
    with gzip.open(sample_corpus(domain), "rt", encoding="utf-8") as handle:
        return [
            json.loads(line)["text"][:max_chars] for _, line in zip(range(num_docs), handle, strict=False)
        ]


@pytest.fixture(scope="module")
def mix(tmp_path_factory) -> Path:
    """finance (20 documents) and general (30): 20% held out, GPT-2 tokens, built by `domainlm mix`'s code."""
    root = tmp_path_factory.mktemp("held_out")
    sources = {}
    for name, domain, count in (("fin", "finance", 20), ("gen", "general", 30)):
        path = root / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in _shipped(domain, count, 3000)))
        sources[name] = {"paths": [str(path)], "ratio": 0.5}
    config = MixConfig.model_validate(
        {
            "sources": sources,
            "total_tokens": "all",
            "seq_len": 64,
            "val_fraction": 0.2,
            "seed": 0,
            "tokenizer": str(reference_tokenizer("gpt2")),
            "out": str(root / "mix"),
        }  # fmt: skip
    )
    return build_mix(config, quiet=True).out


def test_vocab_report_and_eval_expand_a_mix_into_the_same_held_out_texts(mix):
    manifest = open_mix(mix)
    pairs = expand_corpus(str(mix))
    assert pairs == resolve_data_specs([str(mix)])
    assert [name for name, _ in pairs] == ["fin", "gen"]
    for (name, path), source in zip(pairs, manifest.sources, strict=True):
        evaluated = read_domain(name, path).texts
        measured = load_corpus_sample(name, path, sample_docs=0, seed=0).texts
        assert list(evaluated) == measured
        assert len(measured) == source.val.documents > 0
        assert sum(len(t.encode("utf-8")) for t in measured) == source.val.bytes


def test_vocab_report_on_a_mix_has_one_row_per_source(mix, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "domainlm", "vocab", "report", "--tokenizer", "gpt2", "--corpus", str(mix)]
        + ["--sample-docs", "0", "--out", str(tmp_path / "report"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    val = {s.name: s.val.documents for s in open_mix(mix).sources}
    assert {c["name"]: c["documents"] for c in report["corpora"]} == val
    assert {c["name"]: c["sampled_documents"] for c in report["corpora"]} == val
    assert sorted((m["corpus"], m["tokenizer"]) for m in report["metrics"]) == [
        ("fin", "gpt2"),
        ("gen", "gpt2"),
    ]


def test_a_named_mix_dir_is_refused_as_eval_refuses_it(mix):
    with pytest.raises(
        ConfigError, match=r"--corpus 'mine=.*': .* is a mix directory; pass it without NAME="
    ):
        expand_corpus(f"mine={mix}")
    with pytest.raises(ConfigError, match=r"--data 'mine=.*': .* is a mix directory; pass it without NAME="):
        resolve_data_specs([f"mine={mix}"])
