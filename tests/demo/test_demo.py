import json
import subprocess
import sys

import pytest

from domainlm.demo.pipeline import prepare_out
from domainlm.demo.steps import DemoSettings, build_steps
from domainlm.errors import ConfigError
from domainlm.outputs import MARKER_NAME, has_marker, write_marker


def test_steps_are_the_public_commands_in_pipeline_order(tmp_path):
    steps = build_steps(DemoSettings(out=tmp_path))
    assert [s.argv[0] for s in steps] == [
        "tokenizer",
        "vocab",
        "mix",
        "plan",
        "plan",
        "pretrain",
        "eval",
        "generate",
    ]
    assert all(s.shell().startswith("domainlm ") for s in steps)
    pretrain = next(s for s in steps if s.name == "pretrain")
    assert "deepspeed.zero_stage=3" in pretrain.argv and "--num-gpus" in pretrain.argv
    plan = next(s for s in steps if s.name == "plan")
    # the full-size recipe's shape: 22 layers x 2048, 8 GPUs
    assert (
        plan.argv[plan.argv.index("--layers") + 1] == "22" and plan.argv[plan.argv.index("--gpus") + 1] == "8"
    )


def test_out_folder_rules(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        prepare_out(tmp_path / "mine", overwrite=False)
    with pytest.raises(ConfigError, match=f"not written by domainlm \\(no {MARKER_NAME}\\)"):
        prepare_out(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "x"
    demo = tmp_path / "demo"
    demo.mkdir()
    write_marker(demo, "demo")
    (demo / "old.bin").write_text("x")
    assert prepare_out(demo, overwrite=True) == demo
    assert [p.name for p in demo.iterdir()] == [MARKER_NAME] and has_marker(demo)


@pytest.mark.slow
def test_quick_demo_writes_every_artifact_and_training_helps(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "domainlm", "demo", "--quick", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    for artifact in [
        "tokenizer/tokenizer.json",
        "coverage/report.html",
        "mix/manifest.json",
        "plan/plan.txt",
        "plan/plan.json",
        "run/metrics.jsonl",
        "run/export/config.json",
        "untrained/config.json",
        "eval/report.json",
        "eval/bits_per_byte.png",
        "loss.png",
        "report.html",
    ]:
        assert (out / artifact).is_file(), artifact
    bpb = summary["bits_per_byte"]
    for domain in ("finance", "general"):
        assert bpb["trained"][domain] < bpb["untrained"][domain]
    page = (out / "report.html").read_text(encoding="utf-8")
    for link in [
        'href="coverage/report.html"',
        'src="loss.png"',
        'src="eval/bits_per_byte.png"',
        "plan/plan.json",
    ]:
        assert link in page
    assert [s["name"] for s in summary["steps"]][-1] == "generate"
