"""TensorBoard, Weights & Biases (offline) and MLflow (a local file store) each receive every number of
metrics.jsonl, read back through the tracker's own reader; a resumed run continues the same run."""

from __future__ import annotations

import importlib.util
import json

import pytest

from domainlm.errors import ConfigError
from domainlm.pretrain.config import load_recipe
from domainlm.pretrain.metrics import MetricsWriter, read_metrics
from domainlm.pretrain.run import prepare_run
from domainlm.pretrain.trackers import IDS_FILE, open_trackers
from tests.pretrain.wandb_records import history

pytest.importorskip("wandb")
pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

TRAIN = [
    {
        "kind": "train",
        "step": step,
        "loss": 6.0 - step,
        "sources": {"legal": {"loss": 5.5 - step, "share": 0.5}},
    }
    for step in (1, 2, 3)
]
EVAL = {"kind": "eval", "step": 3, "domain": "legal", "loss": 2.5, "bits_per_byte": 1.25}


@pytest.fixture
def tracked(tiny_recipe, tmp_path, monkeypatch):
    """A recipe with all three trackers on, W&B offline and MLflow in a file store under tmp_path."""
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow-skinny has no database store
    uri = (tmp_path / "mlruns").as_uri()
    overrides = [
        "logging.tensorboard=true",
        "logging.wandb.project=domainlm-test",
        "logging.wandb.mode=offline",
        f"logging.mlflow.tracking_uri={uri}",
        "logging.mlflow.experiment=tiny",
    ]
    return load_recipe(tiny_recipe, overrides), uri


def _write(recipe, run_dir, records):
    writer = MetricsWriter(run_dir / "metrics.jsonl", open_trackers(recipe, run_dir))
    for record in records:
        writer.write(record)
    writer.close()


def test_every_tracker_gets_every_number(tracked, tmp_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe, uri = tracked
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _write(recipe, run_dir, [*TRAIN, EVAL])
    assert len(read_metrics(run_dir / "metrics.jsonl")) == 4

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 5.0), (2, 4.0), (3, 3.0)]
    assert [(e.step, e.value) for e in events.Scalars("eval/legal/bits_per_byte")] == [(3, 1.25)]

    ids = json.loads((run_dir / IDS_FILE).read_text())
    client = MlflowClient(tracking_uri=uri)
    loss = client.get_metric_history(ids["mlflow"], "train/sources/legal/loss")
    assert [(m.step, m.value) for m in loss] == [(1, 4.5), (2, 3.5), (3, 2.5)]
    run = client.get_run(ids["mlflow"])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params["train.seed"] == "1" and run.data.params["model.arch"] == "llama"

    (wandb_file,) = (run_dir / "wandb").glob(f"offline-run-*-{ids['wandb']}/run-{ids['wandb']}.wandb")
    rows = history(wandb_file)
    assert [(row["_step"], row["train/loss"]) for row in rows if "train/loss" in row] == [
        (1, 5.0),
        (2, 4.0),
        (3, 3.0),
    ]
    assert any(row.get("eval/legal/bits_per_byte") == 1.25 for row in rows)


def test_a_resumed_run_continues_the_same_runs(tracked, tmp_path):
    from mlflow.tracking import MlflowClient

    recipe, uri = tracked
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _write(recipe, run_dir, TRAIN[:2])
    first = (run_dir / IDS_FILE).read_text()
    _write(recipe, run_dir, TRAIN[2:])
    assert (run_dir / IDS_FILE).read_text() == first
    ids = json.loads(first)
    history_ = MlflowClient(tracking_uri=uri).get_metric_history(ids["mlflow"], "train/loss")
    assert [m.step for m in history_] == [1, 2, 3]


@pytest.mark.parametrize(
    ("override", "module"),
    [
        ("logging.tensorboard=true", "tensorboard"),
        ("logging.wandb.project=p", "wandb"),
        ("logging.mlflow.tracking_uri=http://127.0.0.1:1", "mlflow"),
    ],
)
def test_a_missing_tracker_package_is_named_before_launch(
    tiny_recipe, tmp_path, monkeypatch, override, module
):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == module else real(name))
    field = override.split("=")[0].rsplit(".", 1)[0] if module != "tensorboard" else "logging.tensorboard"
    with pytest.raises(ConfigError, match=f"{field}: the {module} package is not installed"):
        prepare_run(tiny_recipe, [override], out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_mlflow_without_a_destination_is_refused(tiny_recipe, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match="logging.mlflow.tracking_uri: not set"):
        prepare_run(tiny_recipe, ["logging.mlflow.experiment=x"], out=tmp_path / "run")
