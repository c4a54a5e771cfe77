"""Fixtures: small mixes of the shipped corpora with the shipped GPT-2 tokenizer (built once)."""

import pytest

from domainlm.assets import reference_tokenizer
from domainlm.mix.build import build_mix
from domainlm.mix.config import apply_flags, load_mix_config
from tests.mix import DATA_MIXES

SEQ_LEN = 128  # short sequences: thousands of them from the samples, so ratios are exact to 0.1%


def build(tmp_path_factory, yaml_name: str, **flags):
    out = tmp_path_factory.mktemp("mix") / "out"
    config = load_mix_config(DATA_MIXES / yaml_name)
    flags = {"seq_len": SEQ_LEN, "tokenizer": str(reference_tokenizer("gpt2")), "out": str(out), **flags}
    return build_mix(apply_flags(config, yaml_name, **flags), quiet=True)


@pytest.fixture(scope="session")
def finance_result(tmp_path_factory):
    return build(tmp_path_factory, "finance_51_49.yaml")


@pytest.fixture(scope="session")
def finance_mix(finance_result):
    return finance_result.out
