import json
import math

import pytest

from domainlm.errors import ConfigError
from domainlm.eval import EvalSettings, evaluate, load_domains, write_report
from domainlm.eval.data import EvalDomain

from .conftest import TEXTS

DOMAINS = [EvalDomain("legal", "t", tuple(TEXTS[:1])), EvalDomain("finance", "t", tuple(TEXTS[1:2])),
           EvalDomain("general", "t", tuple(TEXTS[3:]))]  # fmt: skip


@pytest.fixture(scope="module")
def report(llama_dir, gpt2_dir, bert_dir, t5_dir):
    models = [f"llama={llama_dir}", f"gpt2={gpt2_dir}", f"bert={bert_dir}", f"t5={t5_dir}"]
    return evaluate(models, DOMAINS, EvalSettings(device="cpu", max_length=32, batch_size=4))


def test_comparison_table_is_models_by_domains(report):
    table = report.table()
    assert table.rows == ["llama", "gpt2", "bert", "t5"]
    assert table.columns == ["legal", "finance", "general"]
    assert len(table.values) == 4 and all(len(row) == 3 for row in table.values)
    assert table.values[2][1] == report.result("bert", "finance").bits_per_byte
    assert [m.kind for m in report.models] == ["causal", "causal", "masked", "seq2seq"]
    assert [(m.max_length, m.stride) for m in report.models] == [(32, 16), (32, 16), (32, None), (32, None)]


def test_every_objective_scores_every_text_token(report, tokenizer):
    for domain in DOMAINS:
        num_text_tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in domain.texts)
        for model in ("llama", "gpt2", "bert", "t5"):
            result = report.result(model, domain.name)
            assert result.num_tokens == num_text_tokens
            assert result.num_bytes == sum(len(t.encode()) for t in domain.texts)
            # A random model over a 300-token vocabulary: close to ln(300) nats per token.
            assert 0.5 * math.log(300) < result.loss < 2 * math.log(300)
            assert result.perplexity == pytest.approx(math.exp(result.loss))


def test_report_files_are_complete_and_deterministic(report, tmp_path, llama_dir):
    out = write_report(report, tmp_path / "r")
    data = json.loads((out / "report.json").read_text())
    assert data["format"] == "domainlm.eval/v1" and "tokenizer" in data["note"]
    assert data["table"]["bits_per_byte"] == report.table().values
    markdown = (out / "report.md").read_text()
    assert "| llama |" in markdown and "relative to `llama`" in markdown
    assert (out / "bits_per_byte.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = evaluate(
        [f"llama={llama_dir}"], DOMAINS[:1], EvalSettings(device="cpu", max_length=32, batch_size=2)
    )
    first = evaluate(
        [f"llama={llama_dir}"], DOMAINS[:1], EvalSettings(device="cpu", max_length=32, batch_size=2)
    )
    write_report(again, tmp_path / "a")
    write_report(first, tmp_path / "b")
    for name in ("report.json", "report.md", "bits_per_byte.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        write_report(report, out)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (EvalSettings(batch_size=0), "--batch-size 0"),
        (EvalSettings(max_length=1), "--max-length 1"),
        (EvalSettings(max_length=16, stride=16), "--stride 16: must be below --max-length 16"),
        (EvalSettings(stride=0), "--stride 0"),
        (EvalSettings(device="tpu"), "--device 'tpu'"),
        (EvalSettings(dtype="fp8"), "--dtype 'fp8'"),
        (EvalSettings(seed=-1), "--seed -1"),
    ],
)
def test_bad_settings(settings, match):
    with pytest.raises(ConfigError, match=match):
        settings.validate()


def test_stride_must_fit_the_models_context(llama_dir, gpt2_dir):
    # gpt2's context is 48 tokens, so --stride 50 cannot leave it any context.
    with pytest.raises(ConfigError, match="model 'gpt2' has a 48-token window"):
        evaluate([f"llama={llama_dir}", f"gpt2={gpt2_dir}"], DOMAINS, EvalSettings(device="cpu", stride=50))


def test_mix_dir_end_to_end(mix_dir, llama_dir):
    report = evaluate([str(llama_dir)], load_domains([str(mix_dir)]), EvalSettings(device="cpu"))
    assert report.table().columns == ["legal", "finance"]
