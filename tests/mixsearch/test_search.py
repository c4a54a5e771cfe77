"""A tiny search end to end: real proxies through `pretrain` (deepspeed launcher, CPU), real bits per byte."""

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

import domainlm.pretrain.run as pretrain_run
from domainlm.mix.config import load_mix_config
from domainlm.mixsearch.search import search

SEARCH = """\
sources:
  fin: {paths: [fin.jsonl.gz], max_repeats: 2}
  gen: {paths: [gen.jsonl.gz]}
tokenizer: gpt2
val_fraction: 0.1
target: fin
constraint: {domain: gen, max_increase: 0.05}
reference: {fin: 0.5, gen: 0.5}
budget: 6
held_out: 3
proxy:
  recipe: tiny_cpu
  overrides: [model.hidden_size=32, model.intermediate_size=64, model.num_heads=2, model.num_layers=1,
              data.seq_len=32, train.max_steps=4, train.global_batch_sequences=4, train.micro_batch_size=4,
              launch.num_gpus=1, deepspeed.zero_stage=0, checkpoint.every_steps=4, eval.every_steps=4,
              eval.max_sequences=1, logging.every_steps=2, optimizer.warmup_steps=1]
  eval_max_docs: 2
"""


def _corpora(folder: Path) -> Path:
    """Two vocabularies that share no word, so the mixture moves each domain's loss."""
    rng = random.Random(0)
    words = {
        "fin": [
            "balance",
            "sheet",
            "assets",
            "liabilities",
            "equity",
            "cash",
            "flow",
            "invoice",
            "ledger",
            "budget",
            "loan",
            "interest",
        ],
        "gen": [
            "she",
            "said",
            "that",
            "he",
            "would",
            "walk",
            "to",
            "the",
            "house",
            "in",
            "the",
            "morning",
            "with",
            "her",
            "sister",
        ],
    }
    for name, vocabulary in words.items():
        with gzip.open(folder / f"{name}.jsonl.gz", "wt", encoding="utf-8") as handle:
            for _ in range(40):
                handle.write(
                    json.dumps({"text": " ".join(rng.choice(vocabulary) for _ in range(200))}) + "\n"
                )
    path = folder / "search.yaml"
    path.write_text(SEARCH, encoding="utf-8")
    return path


@pytest.fixture
def launches(monkeypatch):
    """The proxies each `launch_together` trains (the real one runs)."""
    seen: list[list[str]] = []
    real = pretrain_run.launch_together

    def counting(runs):
        seen.append([run.run_dir.parent.name for run in runs])
        return real(runs)

    monkeypatch.setattr(pretrain_run, "launch_together", counting)
    return seen


@pytest.mark.slow
def test_tiny_search_end_to_end_and_resume(tmp_path, launches):
    path, out = _corpora(tmp_path), tmp_path / "out"
    first = search(path, out, ["train_recommended=false"])
    assert launches == [["p00", "p01", "p02", "p03", "p04", "p05"]] and first.recommended is None

    # resumed (as after a kill): finished proxies are reused, p03 (trained, never evaluated) is only
    # evaluated again, and only the recommended mixture is trained
    (out / "proxies" / "p03" / "result.json").unlink()
    result = search(path, out)
    assert launches[1:] == [["recommended"]]
    assert [r["bits_per_byte"] for r in result.results] == [r["bits_per_byte"] for r in first.results]

    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    roles = [p["role"] for p in report["proxies"]]
    assert roles[0] == "reference" and roles.count("held out") == 3 and roles.count("fit") == 2
    assert report["fit"]["held_out_proxies"] == [f"p{i:02d}" for i in result.plan.held_out]
    for proxy in report["proxies"]:  # 4 steps x 4 sequences = 16: realized ratios are whole sequences
        assert proxy["ratios"]["fin"] * 16 == pytest.approx(round(proxy["ratios"]["fin"] * 16))
        assert 0 < proxy["bits_per_byte"]["fin"] < 8 and 0 < proxy["bits_per_byte"]["gen"] < 8
    fin = np.array([p["ratios"]["fin"] for p in report["proxies"]])
    fin_bpb = np.array([p["bits_per_byte"]["fin"] for p in report["proxies"]])
    assert fin_bpb[np.argmax(fin)] < fin_bpb[np.argmin(fin)]  # more finance text, lower finance loss
    assert report["fit"]["measured_range"]["fin"] == pytest.approx(np.ptp(fin_bpb))
    for domain in ("fin", "gen", "target"):
        held = report["fit"]["held_out"][domain]
        assert held["rmse"] >= 0 and held["max_abs_error"] >= held["rmse"] and -1 <= held["spearman"] <= 1
    rec, measured = report["recommendation"], report["measured"]
    assert sum(rec["ratios"].values()) == pytest.approx(1) and 0.05 <= rec["ratios"]["fin"] <= 0.95
    assert rec["predicted"]["gen"] <= rec["constraint"]["limit"]
    assert measured["bits_per_byte"] == result.recommended["bits_per_byte"]
    assert measured["error"] == pytest.approx(measured["target"] - rec["predicted_target"])
    assert measured["reference_target"] == report["proxies"][0]["target"]
    mix = load_mix_config(out / "recommended.yaml")
    assert mix.sources["fin"].ratio == pytest.approx(rec["ratios"]["fin"]) and mix.total_tokens == "all"
    assert Path(mix.tokenizer).name == "gpt2" and mix.seq_len == 32
    assert (out / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'src="tradeoff.png"' in (out / "report.html").read_text(encoding="utf-8")

    again = search(path, out)  # everything finished, the recommendation included: nothing is trained
    assert len(launches) == 2 and again.recommended == result.recommended
