"""Experiment trackers beside metrics.jsonl: TensorBoard, Weights & Biases, MLflow (each through its own
package, rank 0 only, enabled in the recipe's `logging` section).

Every tracker gets the same numbers as metrics.jsonl, one scalar per tag: `train/loss`,
`train/sources/legal/loss`, `eval/legal/bits_per_byte`. A resumed run continues the same W&B and MLflow
run: their ids are kept in <run dir>/trackers.json (W&B drops re-logged steps at or below its last one).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from domainlm.errors import ConfigError
from domainlm.outputs import atomic_write_text
from domainlm.pretrain.config import LoggingConfig, MlflowConfig, Recipe, WandbConfig

IDS_FILE = "trackers.json"
MLFLOW_PARAM_CHARS = 500  # MLflow rejects longer parameter values
MLFLOW_BATCH = 100  # MLflow's limit of parameters per log_batch call


class Tracker(Protocol):
    def log(self, scalars: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


def scalar_tags(record: dict[str, Any], prefix: str) -> list[tuple[str, float]]:
    """Tags of a record's numbers, nested dicts as paths: train/sources/legal/loss."""
    found = []
    for key, value in record.items():
        if isinstance(value, dict):
            found += scalar_tags(value, f"{prefix}/{key}")
        elif isinstance(value, int | float) and not isinstance(value, bool) and key != "step":
            found.append((f"{prefix}/{key}", value))
    return found


def record_scalars(record: dict[str, Any]) -> dict[str, float]:
    prefix = f"eval/{record['domain']}" if record.get("kind") == "eval" else "train"
    return dict(scalar_tags(record, prefix))


def check_packages(logging: LoggingConfig) -> None:
    """Each enabled tracker's package, and MLflow's destination: one line before launch, not a rank crash."""
    wanted = [
        ("logging.tensorboard", logging.tensorboard, "tensorboard", "tensorboard"),
        ("logging.wandb", logging.wandb is not None, "wandb", "wandb"),
        ("logging.mlflow", logging.mlflow is not None, "mlflow", "mlflow-skinny (or mlflow)"),
    ]
    for field, enabled, module, package in wanted:
        if enabled and importlib.util.find_spec(module) is None:
            raise ConfigError(f"{field}: the {module} package is not installed; pip install {package}")
    if logging.mlflow is not None and not mlflow_uri(logging.mlflow):
        raise ConfigError(
            "logging.mlflow.tracking_uri: not set and $MLFLOW_TRACKING_URI is empty; give the tracking server "
            "(e.g. http://mlflow:5000) or a database (sqlite:///mlflow.db)"
        )


def mlflow_uri(cfg: MlflowConfig) -> str | None:
    return cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def open_trackers(recipe: Recipe, run_dir: Path) -> list[Tracker]:
    """The recipe's trackers, resuming the ids a killed run left in trackers.json."""
    ids = _read_ids(run_dir)
    trackers: list[Tracker] = []
    if recipe.logging.tensorboard:
        trackers.append(TensorBoardTracker(run_dir / "tb"))
    if recipe.logging.wandb is not None:
        ids.setdefault("wandb", uuid.uuid4().hex[:16])
        trackers.append(WandbTracker(recipe.logging.wandb, recipe, run_dir, ids["wandb"]))
    if recipe.logging.mlflow is not None:
        tracker = MlflowTracker(recipe.logging.mlflow, recipe, run_dir, ids.get("mlflow"))
        ids["mlflow"] = tracker.run_id
        trackers.append(tracker)
    if ids:
        atomic_write_text(run_dir / IDS_FILE, json.dumps(ids, indent=2, sort_keys=True) + "\n")
    return trackers


def _read_ids(run_dir: Path) -> dict[str, str]:
    path = run_dir / IDS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class TensorBoardTracker:
    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(log_dir))

    def log(self, scalars: dict[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self._writer.close()


class WandbTracker:
    def __init__(self, cfg: WandbConfig, recipe: Recipe, run_dir: Path, run_id: str) -> None:
        import wandb

        self._run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            mode=cfg.mode,
            dir=str(run_dir),
            name=run_dir.name,
            id=run_id,
            resume="allow",
            config=recipe.model_dump(mode="json"),
            settings=wandb.Settings(silent=True, console="off"),  # rank output stays ours
        )

    def log(self, scalars: dict[str, float], step: int) -> None:
        self._run.log(scalars, step=step)

    def close(self) -> None:
        self._run.finish()


class MlflowTracker:
    def __init__(self, cfg: MlflowConfig, recipe: Recipe, run_dir: Path, run_id: str | None) -> None:
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=mlflow_uri(cfg))
        if run_id is None:
            experiment = self._client.get_experiment_by_name(cfg.experiment)
            experiment_id = (
                experiment.experiment_id if experiment else self._client.create_experiment(cfg.experiment)
            )
            run_id = self._client.create_run(experiment_id, run_name=run_dir.name).info.run_id
            self._log_params(run_id, recipe)
        else:  # a resume: the same run, reopened
            self._client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def _log_params(self, run_id: str, recipe: Recipe) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)[:MLFLOW_PARAM_CHARS]) for k, v in _flatten(recipe.model_dump(mode="json"))]
        for start in range(0, len(params), MLFLOW_BATCH):
            self._client.log_batch(run_id, params=params[start : start + MLFLOW_BATCH])

    def log(self, scalars: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        metrics = [Metric(tag, float(value), now_ms, step) for tag, value in scalars.items()]
        self._client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self._client.set_terminated(self.run_id)


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested recipe -> ("train.seed", 1234) pairs: MLflow parameters are flat strings."""
    pairs = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        pairs += _flatten(value, f"{name}.") if isinstance(value, dict) else [(name, value)]
    return pairs
