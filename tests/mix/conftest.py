"""Fixtures: mixes of the shipped corpora (GPT-2 tokenizer, short sequences), each built once."""

import gzip
import json
from pathlib import Path

import pytest

from domainlm.assets import reference_tokenizer, sample_corpus
from domainlm.mix.build import build_mix
from domainlm.mix.config import MixConfig, apply_flags, load_mix_config
from tests.mix import DATA_MIXES

SEQ_LEN = 128  # short sequences: thousands of them from the samples, so ratios are exact to 0.1%
GPT2 = str(reference_tokenizer("gpt2"))


def build(tmp_path_factory, yaml_name: str, **flags):
    out = tmp_path_factory.mktemp("mix") / "out"
    config = load_mix_config(DATA_MIXES / yaml_name)
    flags = {"seq_len": SEQ_LEN, "tokenizer": GPT2, "out": str(out), **flags}
    return build_mix(apply_flags(config, yaml_name, **flags), quiet=True)


@pytest.fixture(scope="session")
def finance_result(tmp_path_factory):
    return build(tmp_path_factory, "finance_51_49.yaml")


@pytest.fixture(scope="session")
def finance_mix(finance_result):
    return finance_result.out


def shipped_texts(domain: str, num_docs: int) -> list[str]:
    with gzip.open(sample_corpus(domain), "rt", encoding="utf-8") as handle:
        return [json.loads(line)["text"] for _, line in zip(range(num_docs), handle, strict=False)]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_corpora(tmp_path_factory) -> Path:
    """~40K finance and ~60K general GPT-2 tokens: a mix of them builds in well under a second."""
    folder = tmp_path_factory.mktemp("corpora")
    write_jsonl(folder / "fin.jsonl", [t[:8000] for t in shipped_texts("finance", 20)])
    write_jsonl(folder / "gen.jsonl", [t[:6000] for t in shipped_texts("general", 40)])
    return folder


def small_config(corpora: Path, out: Path | None, **fields) -> MixConfig:
    """finance 0.6 (repeated up to 3x) / general 0.4, seq_len 64, 20% of documents held out."""
    data = {
        "sources": {
            "fin": {"paths": [str(corpora / "fin.jsonl")], "ratio": 0.6, "max_repeats": 3},
            "gen": {"paths": [str(corpora / "gen.jsonl")], "ratio": 0.4},
        },
        "total_tokens": "all",
        "seq_len": 64,
        "val_fraction": 0.2,
        "seed": 0,
        "tokenizer": GPT2,
        "out": str(out) if out else None,
        "shard_tokens": 64 * 1000,
    }
    data.update(fields)
    return MixConfig.model_validate(data)
