import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from domainlm.errors import ConfigError
from domainlm.eval.generate import GenerationSettings, Generator

from .test_cli import _app

PROMPTS = ["The court held", ""]


@pytest.fixture(scope="module")
def greedy(llama_dir):
    return Generator(llama_dir, GenerationSettings(max_new_tokens=6, greedy=True, device="cpu"))


def _draw(generator, **settings):
    """The already loaded model with other decoding settings (loading is the slow part)."""
    return generator.generate(PROMPTS, GenerationSettings(max_new_tokens=6, device="cpu", **settings))


def _ids(samples):
    return [s.token_ids for s in samples]


def test_greedy_is_deterministic_and_top_k_1_equals_greedy(greedy):
    first = greedy.generate(PROMPTS)
    assert _ids(first) == _ids(greedy.generate(PROMPTS))
    assert _ids(_draw(greedy, temperature=0.0)) == _ids(first)
    assert _ids(_draw(greedy, top_k=1, seed=7)) == _ids(first)


def test_the_seed_reproduces_samples_and_max_new_tokens_holds(greedy):
    def draw(seed):
        return _draw(greedy, temperature=1.5, seed=seed, num_samples=3)

    samples = draw(1)
    assert len(samples) == 6 and [s.sample for s in samples] == [0, 1, 2, 0, 1, 2]
    assert _ids(samples) == _ids(draw(1))
    assert _ids(samples) != _ids(draw(2))
    for s in samples:
        assert 1 <= len(s.token_ids) <= 6
        assert s.stopped_at_eos or len(s.token_ids) == 6
    # A nucleus of tiny mass keeps only the likeliest token: greedy again.
    assert _ids(_draw(greedy, top_p=1e-6, seed=3)) == _ids(greedy.generate(PROMPTS))


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (dict(top_p=1.5), r"--top-p 1.5: must be in \(0, 1\]"),
        (dict(top_p=0.0), "--top-p 0.0"),
        (dict(temperature=-0.5), "--temperature -0.5: must be >= 0"),
        (dict(temperature=float("nan")), "--temperature nan"),
        (dict(top_k=-1), "--top-k -1"),
        (dict(max_new_tokens=0), "--max-new-tokens 0"),
        (dict(num_samples=0), "--num-samples 0"),
        (dict(greedy=True, num_samples=2), "identical samples"),
        (dict(greedy=True, top_p=0.9), "--greedy ignores"),
        (dict(seed=-1), "--seed -1"),
        (dict(device="gpu"), "--device 'gpu'"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, match):
    with pytest.raises(ConfigError, match=match) as error:
        GenerationSettings(**settings).validate()
    assert "\n" not in str(error.value)


def test_masked_models_cannot_generate(bert_dir):
    with pytest.raises(ConfigError, match="masked LM"):
        Generator(bert_dir, GenerationSettings(device="cpu"))


def test_seq2seq_generates(t5_dir):
    samples = Generator(t5_dir, GenerationSettings(max_new_tokens=4, greedy=True, device="cpu")).generate(
        ["Net"]
    )
    assert len(samples) == 1 and 1 <= len(samples[0].token_ids) <= 4


def test_cli_json(llama_dir):
    args = ["generate", "--model", str(llama_dir), "-p", "Net income", "--max-new-tokens", "3", "--greedy",
            "--device", "cpu", "--json"]  # fmt: skip
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    [sample] = json.loads(result.stdout)
    assert sample["prompt"] == "Net income" and len(sample["token_ids"]) <= 3


def test_bad_top_p_exits_2_without_traceback(llama_dir):
    result = subprocess.run(
        [sys.executable, "-m", "domainlm", "generate", "--model", str(llama_dir), "-p", "x", "--top-p", "1.5"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: --top-p 1.5") and "Traceback" not in result.stderr
