import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from domainlm.config import read_yaml
from domainlm.demo.adaptation import heldout_curves
from domainlm.demo.pipeline import prepare_out
from domainlm.demo.steps import FINANCE_MIX, GENERAL_MIX, DemoSettings, build_steps
from domainlm.errors import ConfigError
from domainlm.mix.config import load_mix_config
from domainlm.outputs import MARKER_NAME, has_marker, write_marker
from domainlm.pretrain.metrics import read_metrics


def test_steps_are_the_public_commands_in_pipeline_order(tmp_path):
    steps = build_steps(DemoSettings(out=tmp_path))
    assert [s.argv[0] for s in steps] == [
        "tokenizer",
        "vocab",
        "mix",
        "mix",
        "plan",
        "plan",
        "pretrain",
        "pretrain",
        "pretrain",
        "eval",
        "generate",
    ]
    assert all(s.shell().startswith("domainlm ") for s in steps)
    by_name = {s.name: s for s in steps}
    assert by_name["mix_general"].argv[1] == str(GENERAL_MIX) and GENERAL_MIX.is_file()
    # (a) and (b) launch together, and the step prints both as the commands a user would run.
    general, domain = by_name["pretrain"].together
    assert by_name["pretrain"].shell() == " && ".join(
        shlex.join(["domainlm", *run.argv(), "--num-gpus", "2"]) for run in (general, domain)
    )
    # (a) and (b): one recipe, seed, steps and batch; only the mix differs.
    differ = set(general.overrides) ^ set(domain.overrides)
    assert differ == {f"data.mix={tmp_path / 'mix_general'}", f"data.mix={tmp_path / 'mix'}"}
    assert "deepspeed.zero_stage=3" in domain.overrides and "train.max_steps=150" in domain.overrides
    # (c): exactly (b)'s command, started from (a)'s export.
    continued = by_name["continue"].argv
    assert continued == [
        *domain.argv()[:4], str(tmp_path / "c_continued"), *domain.argv()[5:],
        "--set", f"model.init_from={tmp_path / 'a_general' / 'export'}", "--num-gpus", "2",
    ]  # fmt: skip
    # The untrained baseline is the public --export-init of (b)'s recipe and overrides: (a)'s init too.
    untrained = by_name["untrained"].argv
    assert untrained[: len(domain.argv())] == domain.argv()
    assert untrained[untrained.index("--export-init") + 1] == str(tmp_path / "untrained")
    evaluate = by_name["eval"].argv
    models = [evaluate[i + 1] for i, arg in enumerate(evaluate) if arg == "--model"]
    assert models == [
        f"untrained={tmp_path / 'untrained'}",
        *(f"{name}={tmp_path / name / 'export'}" for name in ("a_general", "b_mix", "c_continued")),
    ]
    plan = by_name["plan"]
    # the full-size recipe's shape: 22 layers x 2048, 8 GPUs
    assert (
        plan.argv[plan.argv.index("--layers") + 1] == "22" and plan.argv[plan.argv.index("--gpus") + 1] == "8"
    )


def test_both_mixes_hold_out_the_same_general_documents():
    """(a) is scored on general text it never trained on only if both mixes split `general` alike."""
    finance, general = load_mix_config(FINANCE_MIX), load_mix_config(GENERAL_MIX)
    assert general.sources["general"] == finance.sources["general"].model_copy(update={"ratio": 1.0})
    assert (general.val_fraction, general.seed) == (finance.val_fraction, finance.seed)


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
RUNS = ("a_general", "b_mix", "c_continued")
DEMO_ARTIFACTS = [
    "tokenizer/tokenizer.json",
    "coverage/report.html",
    "mix/manifest.json",
    "mix_general/manifest.json",
    "plan/plan.txt",
    "plan/plan.json",
    *(f"{run}/{name}" for run in RUNS for name in ("metrics.jsonl", "export/config.json")),
    "untrained/config.json",
    "eval/report.json",
    "eval/bits_per_byte.png",
    "training.png",
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
        timeout=1800,  # a guard against a hang: --quick trains three models, minutes on 2 busy cores
    )


def _imported_from(cwd: Path, env: dict[str, str]) -> Path:
    code = "import domainlm; print(domainlm.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    return Path(result.stdout.strip())


def _check_quick_demo(out: Path, result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    for artifact in DEMO_ARTIFACTS:
        assert (out / artifact).is_file(), artifact
    page = (out / "report.html").read_text(encoding="utf-8")
    for link in [
        'href="coverage/report.html"',
        'src="training.png"',
        'src="eval/bits_per_byte.png"',
        "plan/plan.json",
        "(a) general only",
        "(b) domain mix",
        "(c) continued",
    ]:
        assert link in page
    assert [s["name"] for s in summary["steps"]][-1] == "generate"
    return summary


@pytest.fixture(scope="module")
def readme_demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One run of the README's command, as written, in the root of a fresh clone: every test below
    reads it (a quick demo trains three models and takes minutes on 2 cores)."""
    clone = _fresh_clone(tmp_path_factory.mktemp("readme") / "clone")
    env = _env()
    assert _imported_from(clone, env) == clone / "domainlm" / "__init__.py"  # the clone's code runs
    return clone, _domainlm(["demo", "--quick", "--json"], clone, env)


@pytest.mark.slow
def test_readme_demo_runs_from_the_root_of_a_fresh_clone(readme_demo):
    """Relative default --out (demo_out) in the repository root, where the pretrain steps get
    `--set data.mix=demo_out/mix` (a path relative to the cwd)."""
    clone, result = readme_demo
    assert "data.mix=demo_out/mix" in result.stderr  # the step was printed with the relative path
    assert "data.mix=demo_out/mix_general" in result.stderr
    _check_quick_demo(clone / "demo_out", result)


@pytest.mark.slow
def test_the_domain_model_beats_the_general_only_model_on_finance(readme_demo):
    """(b), trained on the 51/49 mix, against (a), trained on general text only, at equal tokens and seed."""
    clone, result = readme_demo
    summary = _check_quick_demo(clone / "demo_out", result)
    bpb = summary["bits_per_byte"]
    a, b, c = (bpb[name] for name in RUNS)
    assert b["finance"] < a["finance"]
    # The mix buys more on finance than it costs on general text (relative change in bits per byte).
    assert (a["finance"] - b["finance"]) / a["finance"] > (b["general"] - a["general"]) / a["general"]
    for domain in ("finance", "general"):
        assert max(a[domain], b[domain], c[domain]) < bpb["untrained"][domain]
    assert c["finance"] < a["finance"]  # continued pretraining on the mix learned finance too
    for line in (f"{b['finance']:.3f} vs {a['finance']:.3f}", "(a) general only", "(c) continued"):
        assert line in (clone / "demo_out" / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_continued_pretraining_starts_from_the_general_model_with_the_domain_models_tokens(readme_demo):
    clone, result = readme_demo
    out = clone / "demo_out"
    models = {m["name"]: m for m in _check_quick_demo(out, result)["models"]}
    per_run = 30 * 16 * 64  # --quick: 30 steps of tiny_cpu's 16 sequences x 64 tokens
    assert [models[name]["tokens"] for name in ("untrained", *RUNS)] == [0, per_run, per_run, 2 * per_run]
    continued = read_yaml(out / "c_continued" / "recipe.yaml")
    assert Path(continued["model"]["init_from"]) == (out / "a_general" / "export").resolve()
    domain = read_yaml(out / "b_mix" / "recipe.yaml")
    assert continued["data"] == domain["data"] and continued["train"] == domain["train"]
    # The report's held-out curves count tokens seen in all: (c)'s start where (a)'s ended.
    curves = heldout_curves(out)
    first = read_metrics(out / "c_continued" / "metrics.jsonl")
    step = next(m["step"] for m in first if m["kind"] == "eval")
    assert curves["c_continued"][0]["tokens"] == per_run + step * 16 * 64
    assert curves["a_general"][-1]["tokens"] == per_run
    assert {m["domain"] for m in curves["a_general"]} == {"general"}  # (a)'s mix holds out no finance


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
    for mix in ("finance_51_49", "general_only"):
        assert (site / "domainlm" / "data_mixes" / f"{mix}.yaml").is_file()
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
