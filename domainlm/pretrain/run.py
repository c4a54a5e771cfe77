"""Recipe + overrides + flags -> a prepared run dir (resolved recipe, run.json, DeepSpeed JSON, launch command),
a dry-run report (with the planner's estimate), or a finished run with its HF export.

Python API used by the CLI and the demo: `prepare_run`, `dry_run_report`, `launch`, `run_pretraining`.
Everything is validated here, in the parent process, before any rank starts or any file is written.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from domainlm.errors import ConfigError, DataError, ResourceError
from domainlm.mix.dataset import MixManifest, open_mix
from domainlm.outputs import atomic_write_text, to_json, write_json
from domainlm.pretrain import checkpoint as ckpt
from domainlm.pretrain.config import Recipe, load_recipe, max_steps
from domainlm.pretrain.engine import build_deepspeed_config
from domainlm.pretrain.launch import (
    LaunchSpec,
    deepspeed_command,
    format_command,
    launch_env,
    resolve_launch,
    sbatch_script,
)
from domainlm.pretrain.loop import RUN_INFO

log = logging.getLogger(__name__)


@dataclass
class PreparedRun:
    """A validated run: where it goes, what it reads, and the exact command that trains it."""

    recipe: Recipe
    run_dir: Path
    mix_dir: Path
    tokenizer_dir: Path
    spec: LaunchSpec
    ds_config: dict[str, Any]
    command: list[str]
    env: dict[str, str] = field(repr=False)
    resume_from: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _mix_config(recipe: Recipe) -> Any:
    """The recipe's mix YAML (with data.mix_overrides and data.tokenizer applied), validated."""
    from domainlm.mix.config import apply_flags, load_mix_config

    config = load_mix_config(recipe.data.mix, recipe.data.mix_overrides)
    return apply_flags(config, recipe.data.mix, tokenizer=recipe.data.tokenizer)


def _mix_dir_for(recipe: Recipe, run_dir: Path, build: bool) -> Path:
    """The mix directory, building a mix YAML into data.build_dir (default <run dir>/mix) when needed."""
    source = Path(recipe.data.mix)
    if source.is_dir():
        return source
    if source.suffix not in (".yaml", ".yml"):
        raise ConfigError(
            f"data.mix {source}: not a mix directory or a mix YAML; build one with `domainlm mix`"
        )
    config = _mix_config(recipe)  # validated even when the mix is already built, or not built (dry run)
    out = Path(recipe.data.build_dir) if recipe.data.build_dir else run_dir / "mix"
    if (out / "manifest.json").is_file() or not build:
        return out
    from domainlm.mix.build import build_mix  # the mix stage's library API
    from domainlm.mix.config import apply_flags

    log.info("building mix %s -> %s", source, out)
    build_mix(apply_flags(config, recipe.data.mix, out=str(out)), quiet=True)
    return out


def _tokenizer_dir(recipe: Recipe, manifest: MixManifest) -> Path:
    """The recipe's tokenizer, else the mix's; it must be the one the mix was tokenized with."""
    path = Path(recipe.data.tokenizer or manifest.tokenizer.path)
    if not path.is_absolute() and manifest.root is not None and not path.exists():
        path = (manifest.root / path).resolve()
    if not path.is_dir():
        raise DataError(f"tokenizer {path}: not found; set data.tokenizer to the mix's tokenizer directory")
    return path


def _vocab_size(tokenizer_dir: Path) -> int:
    from transformers import AutoTokenizer

    return len(AutoTokenizer.from_pretrained(tokenizer_dir))


def _check_tokenizer(recipe: Recipe, manifest: MixManifest, tokenizer_dir: Path) -> int:
    """Vocabulary checks that would otherwise fail inside every rank; returns len(tokenizer)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    vocab = len(tokenizer)
    if vocab < manifest.vocab_size:
        raise DataError(
            f"data.tokenizer {tokenizer_dir}: {vocab} tokens but the mix was built with {manifest.vocab_size}; "
            "use the mix's tokenizer"
        )
    if tokenizer.eos_token_id is None:
        raise DataError(f"data.tokenizer {tokenizer_dir}: no eos_token; train it with `domainlm tokenizer`")
    if recipe.model.added_tokens_map is not None and not Path(recipe.model.added_tokens_map).is_file():
        raise ConfigError(f"model.added_tokens_map {recipe.model.added_tokens_map}: file not found")
    if recipe.model.init_from is not None and not Path(recipe.model.init_from, "config.json").is_file():
        raise ConfigError(
            f"model.init_from {recipe.model.init_from}: no config.json; give a local HF model dir"
        )
    return vocab


def prepare_run(
    recipe_name: str | Path,
    overrides: list[str] | None = None,
    out: Path | None = None,
    *,
    num_gpus: int | None = None,
    num_nodes: int | None = None,
    hostfile: str | None = None,
    launcher: str | None = None,
    resume: bool = False,
    force_resume: bool = False,
    export_only: bool = False,
    build: bool = True,
) -> PreparedRun:
    """Validate everything and resolve paths, counts and the launch; writes nothing."""
    recipe = load_recipe(recipe_name, overrides)
    run_dir = Path(out or Path("runs") / recipe.name).resolve()
    spec = resolve_launch(recipe.launch, num_gpus, num_nodes, hostfile, launcher)
    mix_dir = _mix_dir_for(recipe, run_dir, build)
    if (mix_dir / "manifest.json").is_file():
        manifest = open_mix(mix_dir)
        seq_len, tokenizer_dir = manifest.seq_len, _tokenizer_dir(recipe, manifest)
        vocab_size = _check_tokenizer(recipe, manifest, tokenizer_dir)
    else:  # a mix YAML not built yet (--dry-run): what it will produce
        manifest, config = None, _mix_config(recipe)
        if config.tokenizer is None:
            raise ConfigError(f"data.mix {recipe.data.mix}: names no tokenizer; set data.tokenizer")
        seq_len, tokenizer_dir = config.seq_len, Path(config.tokenizer)
        vocab_size = _vocab_size(tokenizer_dir)
    ds_config = build_deepspeed_config(recipe, seq_len, spec.world_size)
    info = {"seq_len": seq_len, "max_steps": max_steps(recipe.train, seq_len), "vocab_size": vocab_size}
    found = ckpt.latest_checkpoint(run_dir)
    if export_only and found is None:
        raise ConfigError(
            f"--export-only: no complete checkpoint under {run_dir / 'checkpoints'}; train first"
        )
    if not export_only:
        _check_run_dir(run_dir, found, resume, info["max_steps"])
    if found is not None:
        _check_resume(recipe, run_dir, found, manifest, spec.world_size, force_resume)
    _check_optional_packages(recipe)
    return PreparedRun(
        recipe=recipe,
        run_dir=run_dir,
        mix_dir=mix_dir,
        tokenizer_dir=tokenizer_dir,
        spec=spec,
        ds_config=ds_config,
        command=deepspeed_command(spec, run_dir),
        env=launch_env(spec),
        resume_from=found[0] if found else None,
        info={**info, "force_resume": force_resume, "export_only": export_only},
    )


def _check_run_dir(run_dir: Path, found: tuple | None, resume: bool, total_steps: int) -> None:
    """A finished run is not silently retrained; --resume needs something to resume."""
    if found is not None and found[1].step >= total_steps:
        raise ConfigError(
            f"--out {run_dir}: holds a finished run (step {found[1].step} of {total_steps}); choose another "
            "--out, or raise train.max_steps with --set to continue it"
        )
    if resume and found is None:
        raise ConfigError(f"--resume: no complete checkpoint under {run_dir / 'checkpoints'}; drop --resume")


# Recipe fields a checkpoint depends on: changing them makes resuming load the wrong state.
_RESUME_FIELDS = (
    "model",
    "objective",
    "train.seed",
    "train.micro_batch_size",
    "train.global_batch_sequences",
    "train.global_batch_tokens",
    "train.precision",
    "deepspeed.zero_stage",
)


def _check_resume(
    recipe: Recipe, run_dir: Path, found: tuple, manifest: MixManifest | None, world_size: int, force: bool
) -> None:
    """The worker checks again; failing here means no rank is started for a run that cannot resume."""
    path, state = found
    if manifest is not None:
        current = ckpt.TrainerState(0, 0, world_size, manifest.fingerprint, manifest.tokenizer.fingerprint)
        ckpt.check_resumable(state, current, path, force)
    if not force:
        _check_same_training(recipe, run_dir)


def _check_same_training(recipe: Recipe, run_dir: Path) -> None:
    """Refuse to resume a checkpoint with a recipe that changed what the checkpoint holds."""
    saved_path = run_dir / "recipe.yaml"
    if not saved_path.is_file():
        return
    from domainlm.config import read_yaml

    saved, now = read_yaml(saved_path), recipe.model_dump(mode="json")
    changed = []
    for dotted in _RESUME_FIELDS:
        section, _, key = dotted.partition(".")
        old = (saved.get(section) or {}).get(key) if key else saved.get(section)
        new = now[section][key] if key else now[section]
        if old != new:
            changed.append(dotted if isinstance(new, dict) else f"{dotted} {old} -> {new}")
    if changed:
        raise ConfigError(
            f"--out {run_dir}: the recipe changed since its checkpoints ({'; '.join(changed)}); "
            "use a new --out, or --force-resume"
        )


def _check_optional_packages(recipe: Recipe) -> None:
    import importlib.util

    if recipe.logging.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "logging.tensorboard: the tensorboard package is not installed; pip install tensorboard"
        )


def write_run_files(prepared: PreparedRun) -> None:
    """recipe.yaml (resolved), run.json, ds_config.json and the launch command into the run dir."""
    run_dir = prepared.run_dir
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.yaml", prepared.recipe.to_yaml())
    write_json(run_dir / "ds_config.json", prepared.ds_config)
    run_info = {
        **prepared.info,
        "device": prepared.spec.device,
        "world_size": prepared.spec.world_size,
        "mix_dir": str(prepared.mix_dir),
        "tokenizer_dir": str(prepared.tokenizer_dir),
    }
    write_json(run_dir / RUN_INFO, run_info)
    atomic_write_text(
        run_dir / "launch.sh", "#!/bin/bash\n" + format_command(prepared.command, prepared.spec) + "\n"
    )
    if prepared.spec.launcher == "slurm":
        atomic_write_text(
            run_dir / "launch.sbatch", sbatch_script(prepared.spec, run_dir, prepared.recipe.name)
        )


def planner_estimate(prepared: PreparedRun) -> dict[str, Any]:
    """Memory per GPU, step time and total time from domainlm.plan for the recipe's target GPU."""
    from domainlm.plan.flops import flops_per_token, training_seconds
    from domainlm.plan.hardware import get_gpu
    from domainlm.plan.memory import Strategy, estimate_memory
    from domainlm.plan.shapes import make_shape

    recipe, model = prepared.recipe, prepared.recipe.model
    if model.arch != "llama" or model.init_from is not None:
        return {"note": "the planner models from-scratch Llama shapes over a built mix; no estimate"}
    seq_len, ds = prepared.info["seq_len"], recipe.deepspeed
    gpu = get_gpu(recipe.launch.gpu_type)
    shape = make_shape(
        "llama",
        model.num_layers,
        model.hidden_size,
        model.num_heads,
        prepared.info["vocab_size"],
        num_kv_heads=model.num_kv_heads,
        ffn_size=model.intermediate_size,
        tie_embeddings=model.tie_embeddings,
    )
    strategy = Strategy(f"zero{ds.zero_stage}", ds.zero_stage, ds.offload_optimizer, ds.offload_params)
    gpus = prepared.spec.world_size
    memory = estimate_memory(
        shape,
        seq_len=seq_len,
        micro_batch=recipe.train.micro_batch_size,
        precision=recipe.train.precision,
        num_gpus=gpus,
        strategy=strategy,
        checkpointing=ds.activation_checkpointing,
        gpu_memory_bytes=gpu.memory_bytes,
    )
    assumed_mfu = 0.40
    tokens_per_step = prepared.ds_config["train_batch_size"] * seq_len
    per_token = flops_per_token(shape.matmul_params, shape.num_layers, shape.hidden_size, seq_len)
    step_s = training_seconds(
        per_token * tokens_per_step, gpus, gpu.peak(recipe.train.precision), assumed_mfu
    )
    return {
        "gpu": gpu.name,
        "num_gpus": gpus,
        "num_params": shape.num_params,
        "memory_per_gpu_gib": round(memory.total / 2**30, 2),
        "gpu_memory_gib": round(gpu.memory_gib, 1),
        "fits": memory.fits,
        "assumed_mfu": assumed_mfu,
        "step_seconds": round(step_s, 3),
        "total_hours": round(step_s * prepared.info["max_steps"] / 3600, 2),
        "tokens_per_step": tokens_per_step,
    }


def dry_run_report(prepared: PreparedRun) -> dict[str, Any]:
    """What --dry-run prints: resolved recipe, DeepSpeed JSON, exact command, planner estimate."""
    return {
        "recipe": prepared.recipe.model_dump(mode="json"),
        "run_dir": str(prepared.run_dir),
        "mix_dir": str(prepared.mix_dir),
        "world_size": prepared.spec.world_size,
        "gradient_accumulation_steps": prepared.ds_config["gradient_accumulation_steps"],
        "max_steps": prepared.info["max_steps"],
        "deepspeed_config": prepared.ds_config,
        "command": format_command(prepared.command, prepared.spec),
        "resume_from": str(prepared.resume_from) if prepared.resume_from else None,
        "estimate": planner_estimate(prepared),
    }


def launch(prepared: PreparedRun) -> Path:
    """Write the run files and train through the deepspeed launcher; returns the run dir.

    With --launcher slurm, writes launch.sbatch and returns without training.
    """
    write_run_files(prepared)
    if prepared.spec.launcher == "slurm":
        log.info("wrote %s; submit it with sbatch", prepared.run_dir / "launch.sbatch")
        return prepared.run_dir
    _run_command(prepared.command, prepared)
    return prepared.run_dir


def launch_together(runs: list[PreparedRun]) -> list[Path]:
    """Train several prepared runs one after another in one launch (one process group, one start-up)."""
    if len({replace(run.spec, master_port=0) for run in runs}) != 1:  # each picked its own free port
        raise ConfigError("runs launched together must share device, --num-gpus, --num-nodes and --hostfile")
    for run in runs:
        write_run_files(run)
    _run_command(deepspeed_command(runs[0].spec, [run.run_dir for run in runs]), runs[0])
    return [run.run_dir for run in runs]


def _run_command(command: list[str], prepared: PreparedRun) -> None:
    log.info("launching: %s", format_command(command, prepared.spec))
    # Rank output goes to stderr, like our logs, so stdout stays clean for --json.
    result = subprocess.run(command, env=prepared.env, check=False, stdout=sys.stderr)
    if result.returncode != 0:
        raise ResourceError(
            f"training exited with status {result.returncode}; see {prepared.run_dir / 'logs'}/rank*.log "
            "(rerun the same command to resume from the last checkpoint)"
        )


def run_pretraining(
    recipe: str | Path,
    overrides: list[str] | None = None,
    num_procs: int | None = None,
    out: Path | None = None,
    **flags: Any,
) -> Path:
    """Train `recipe` on `num_procs` ranks (GPUs, or CPU ranks without GPUs) into `out`; returns the run dir,
    whose `export/` holds the HF model."""
    prepared = prepare_run(recipe, overrides, out, num_gpus=num_procs, **flags)
    return launch(prepared)


def report_json(report: dict[str, Any]) -> str:
    return to_json(report)
