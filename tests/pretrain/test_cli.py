"""`domainlm pretrain` as a user runs it: one `error:` line and exit 2 for a bad flag; --dry-run shows
the resolved seq_len and tokens per step with where each came from."""

from __future__ import annotations

import json
import subprocess
import sys


def _pretrain(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "domainlm", "pretrain", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_zero_gpus_is_one_line_exit_2(tiny_recipe, tmp_path):
    result = _pretrain("--recipe", str(tiny_recipe), "--num-gpus", "0", "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --num-gpus 0: must be at least 1 process per node (a GPU, or a CPU rank); "
        "drop it for launch.num_gpus"
    ]
    assert not (tmp_path / "run").exists()


def test_dry_run_prints_seq_len_tokens_per_step_and_their_sources(tmp_path):
    result = _pretrain("--recipe", "tiny_cpu", "--dry-run", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # rich may wrap long lines
    assert "seq_len 128 from data.seq_len in " in text and "tiny_cpu.yaml" in text
    assert "tokens per step 2,048 = train.global_batch_sequences 16 x seq_len 128" in text
    assert "(the mix YAML's tokenizer): 50,257 tokens, eos id 50256" in text
    report = json.loads(
        _pretrain(
            "--recipe", "tiny_cpu", "--dry-run", "--json", "--set", "data.seq_len=64", cwd=tmp_path
        ).stdout
    )
    assert report["seq_len"] == {"value": 64, "source": "--set data.seq_len"}
    assert report["tokens_per_step"]["value"] == 16 * 64
    assert report["mix"]["built"] is False and report["mix"]["build_from"].endswith("legal_50_50.yaml")
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()
