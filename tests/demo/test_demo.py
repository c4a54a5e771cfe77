import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
        "pretrain",
        "eval",
        "generate",
    ]
    assert all(s.shell().startswith("domainlm ") for s in steps)
    pretrain = next(s for s in steps if s.name == "pretrain")
    assert "deepspeed.zero_stage=3" in pretrain.argv and "--num-gpus" in pretrain.argv
    # The untrained baseline is the public --export-init of the very same recipe and overrides.
    untrained = next(s for s in steps if s.name == "untrained")
    assert untrained.argv[: len(pretrain.argv) - 2] == pretrain.argv[:-2]
    assert untrained.argv[untrained.argv.index("--export-init") + 1] == str(tmp_path / "untrained")
    evaluate = next(s for s in steps if s.name == "eval")
    assert f"untrained={tmp_path / 'untrained'}" in evaluate.argv
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


REPO = Path(__file__).resolve().parents[2]
DEMO_ARTIFACTS = [
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
]


def _fresh_clone(dest: Path) -> Path:
    """The working tree as a clone would have it: tracked and untracked-but-not-ignored files, so
    uncommitted work is what gets tested (no .venv, no build outputs, no earlier demo_out)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is not in a clone of it
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, **extra}


def _domainlm(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "domainlm", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _imported_from(cwd: Path, env: dict[str, str]) -> Path:
    code = "import domainlm; print(domainlm.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    return Path(result.stdout.strip())


def _check_quick_demo(out: Path, result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    for artifact in DEMO_ARTIFACTS:
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


@pytest.mark.slow
def test_readme_demo_runs_from_the_root_of_a_fresh_clone(tmp_path):
    """The README's command, as written: relative default --out (demo_out) in the repository root, where
    the pretrain step gets `--set data.mix=demo_out/mix` (a path relative to the cwd)."""
    clone = _fresh_clone(tmp_path / "clone")
    env = _env()
    assert _imported_from(clone, env) == clone / "domainlm" / "__init__.py"  # the clone's code runs
    result = _domainlm(["demo", "--quick", "--json"], clone, env)
    assert "data.mix=demo_out/mix" in result.stderr  # the step was printed with the relative path
    _check_quick_demo(clone / "demo_out", result)


@pytest.mark.slow
def test_non_editable_install_runs_recipes_and_the_demo_from_an_unrelated_directory(tmp_path):
    """`pip install .` (not editable): recipes and data mixes ship inside the package."""
    clone = _fresh_clone(tmp_path / "clone")
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*install, "--target", str(site), str(clone)], check=True, capture_output=True, timeout=600
    )
    assert (site / "domainlm" / "recipes" / "legal.yaml").is_file()
    assert (site / "domainlm" / "data_mixes" / "finance_51_49.yaml").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(PYTHONPATH=str(site))
    assert _imported_from(elsewhere, env) == site / "domainlm" / "__init__.py"  # not the repository's copy

    result = _domainlm(["pretrain", "--recipe", "legal", "--dry-run", "--json"], elsewhere, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["recipe"]["data"]["mix"] == str(
        site / "domainlm/data_mixes/legal_50_50.yaml"
    )

    _check_quick_demo(elsewhere / "demo_out", _domainlm(["demo", "--quick", "--json"], elsewhere, env))
