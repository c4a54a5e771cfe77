"""Recipe + overrides + flags -> a validated run (resolve), its run dir with the mix built and run_spec.json
written (build), and the training launch (launch); or a dry-run report.

Python API used by the CLI, the tests and the demo: `prepare_run` (resolve: pure, reads only),
`write_run_files` (build), `launch` / `launch_together` (build + train), `run_pretraining` (all).
Validate, then build, then launch: nothing is tokenized, written or started until every check of
`prepare_run` has passed, and the ranks get the resolved values in one typed RunSpec.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from domainlm.errors import ConfigError, ResourceError
from domainlm.outputs import atomic_write_text, check_output_dir, prepare_run_dir, write_json
from domainlm.pretrain import checkpoint as ckpt
from domainlm.pretrain import elastic, preempt, preflight
from domainlm.pretrain.config import Recipe, global_batch_sequences, max_steps
from domainlm.pretrain.engine import build_deepspeed_config
from domainlm.pretrain.inputs import RunInputs, Sourced, load_run, relpath_inside
from domainlm.pretrain.launch import (
    LaunchSpec,
    format_command,
    launch_command,
    launch_env,
    resolve_launch,
    write_launch_files,
)
from domainlm.pretrain.spec import RunSpec, write_run_spec

log = logging.getLogger(__name__)

COMMAND = "pretrain"  # the output marker's command: --overwrite replaces only run dirs pretrain wrote


@dataclass
class PreparedRun:
    """A validated run: where it goes, what it reads, every resolved number, and the command that trains it."""

    recipe: Recipe
    run_dir: Path
    inputs: RunInputs
    spec: LaunchSpec
    ds_config: dict[str, Any]
    max_steps: int
    command: list[str]
    env: dict[str, str] = field(repr=False)
    resume_from: Path | None = None
    overwrite: bool = False
    force_resume: bool = False
    export_only: bool = False
    resume_world_size: int | None = None  # ranks the checkpoint was saved on (elastic when != world size)

    @property
    def elastic(self) -> bool:
        """Resuming on another rank count: through the checkpoint's universal form."""
        return self.resume_world_size is not None and self.resume_world_size != self.spec.world_size

    @property
    def mix_dir(self) -> Path:
        return self.inputs.mix_dir

    @property
    def tokenizer_dir(self) -> Path:
        return Path(self.inputs.tokenizer.path)

    @property
    def seq_len(self) -> Sourced:
        return self.inputs.seq_len

    @property
    def tokens_per_step(self) -> Sourced:
        sequences = self.ds_config["train_batch_size"]
        train = self.recipe.train
        how = (
            f"train.global_batch_sequences {sequences}"
            if train.global_batch_sequences is not None
            else f"train.global_batch_tokens {train.global_batch_tokens:,} rounded up to {sequences} sequences"
        )
        return Sourced(sequences * self.seq_len.value, f"{how} x seq_len {self.seq_len.value}")


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
    overwrite: bool = False,
    allow_batch_change: bool = False,
    master_addr: str | None = None,
    time_limit: str | None = None,
) -> PreparedRun:
    """Resolve and validate everything (run dir, seq_len, tokenizer, batch, steps, resume, packages).

    Reads files only: nothing is built, written or started, so a failure leaves no trace.
    """
    overrides = list(overrides or [])
    _check_flags(overwrite, resume, export_only)
    recipe, run_dir, inputs = load_run(recipe_name, overrides, out, fresh=overwrite)
    spec = resolve_launch(
        recipe.launch, num_gpus, num_nodes, hostfile, launcher, master_addr=master_addr, time_limit=time_limit
    )
    check_output_dir(run_dir, overwrite=True, inputs=_run_inputs(recipe, inputs, run_dir, overwrite))
    seq_len = inputs.seq_len.value
    found = None if overwrite else ckpt.latest_checkpoint(run_dir)
    if found is not None:  # before the batch arithmetic: an elastic resume explains why it cannot divide
        _check_elastic(recipe, found, seq_len, spec.world_size, allow_batch_change)
    ds_config = build_deepspeed_config(recipe, seq_len, spec.world_size)  # the batch must divide
    total_steps = max_steps(recipe.train, seq_len)
    _warn_epochs(recipe, inputs.manifest, ds_config["train_batch_size"] * total_steps)
    if export_only and found is None:
        raise ConfigError(
            f"--export-only: no complete checkpoint under {run_dir / 'checkpoints'}; train first"
        )
    if not export_only:
        _check_run_dir(run_dir, found, resume, total_steps)
    if found is not None:
        _check_resume(recipe, run_dir, found, inputs, spec.world_size, force_resume, allow_batch_change)
    preflight.check_packages(recipe, spec.device)
    return PreparedRun(
        recipe=recipe,
        run_dir=run_dir,
        inputs=inputs,
        spec=spec,
        ds_config=ds_config,
        max_steps=total_steps,
        command=launch_command(spec, run_dir),
        env=launch_env(spec, run_dir=run_dir),
        resume_from=found[0] if found else None,
        overwrite=overwrite,
        force_resume=force_resume,
        export_only=export_only,
        resume_world_size=found[1].world_size if found else None,
    )


def _check_elastic(
    recipe: Recipe, found: tuple, seq_len: int, world_size: int, allow_batch_change: bool
) -> None:
    """Another rank count (or batch) than the checkpoint's: the global batch must be kept, or a flag given."""
    path, state = found
    batch = global_batch_sequences(recipe.train, seq_len)
    if state.world_size == world_size and state.global_batch_sequences in (None, batch):
        return
    elastic.check_global_batch(
        path,
        state.world_size,
        state.global_batch_sequences,
        batch,
        recipe.train.micro_batch_size,
        world_size,
        allow_batch_change,
    )


def _check_flags(overwrite: bool, resume: bool, export_only: bool) -> None:
    if overwrite and (resume or export_only):
        flag = "--resume" if resume else "--export-only"
        raise ConfigError(f"--overwrite starts the run over, {flag} needs its checkpoints; drop one of them")


def _run_inputs(recipe: Recipe, inputs: RunInputs, run_dir: Path, overwrite: bool) -> list[Path]:
    """What the run reads from outside: --overwrite must never delete one of them.

    A mix built from a YAML into the run dir is the run's own output, not an input.
    """
    paths = inputs.read_paths(recipe)
    if not overwrite:  # nothing is deleted: resuming with inputs kept in the run dir is fine
        paths = [p for p in paths if not relpath_inside(p, run_dir)]
    return paths


def _check_run_dir(run_dir: Path, found: tuple | None, resume: bool, total_steps: int) -> None:
    """A finished run is not silently retrained; --resume needs something to resume."""
    if found is not None and found[1].step >= total_steps:
        raise ConfigError(
            f"--out {run_dir}: holds a finished run (step {found[1].step} of {total_steps}); choose another "
            "--out, start over with --overwrite, or raise train.max_steps with --set to continue it"
        )
    if resume and found is None:
        raise ConfigError(f"--resume: no complete checkpoint under {run_dir / 'checkpoints'}; drop --resume")


# Recipe fields a checkpoint depends on: changing them makes resuming load the wrong state. The micro
# batch is not one (the data order and each step's samples depend only on the global batch), so an
# elastic resume may change it to keep the global batch; the global batch changes with --allow-batch-change.
_BATCH_FIELDS = ("train.global_batch_sequences", "train.global_batch_tokens")
_RESUME_FIELDS = (
    "model",
    "objective",
    "train.seed",
    *_BATCH_FIELDS,
    "train.precision",
    "deepspeed.zero_stage",
)


def _current_state(inputs: RunInputs, world_size: int) -> ckpt.TrainerState | None:
    if inputs.manifest is None:
        return None  # a mix still to build: checked again once it is (write_run_files)
    return ckpt.TrainerState(0, 0, world_size, inputs.manifest.fingerprint, inputs.tokenizer.fingerprint)


def _check_resume(
    recipe: Recipe,
    run_dir: Path,
    found: tuple,
    inputs: RunInputs,
    world_size: int,
    force: bool,
    allow_batch_change: bool = False,
) -> None:
    """The same checks the ranks would make, made here so that no rank starts for a run that cannot resume."""
    path, state = found
    current = _current_state(inputs, world_size)
    if current is not None:
        ckpt.check_resumable(state, current, path, force)
    if not force:
        _check_same_training(recipe, run_dir, allow_batch_change)


def _check_same_training(recipe: Recipe, run_dir: Path, allow_batch_change: bool = False) -> None:
    """Refuse to resume a checkpoint with a recipe that changed what the checkpoint holds."""
    saved_path = run_dir / "recipe.yaml"
    if not saved_path.is_file():
        return
    from domainlm.config import read_yaml

    saved, now = read_yaml(saved_path), recipe.model_dump(mode="json")
    changed = []
    for dotted in _RESUME_FIELDS:
        if allow_batch_change and dotted in _BATCH_FIELDS:
            continue
        section, _, key = dotted.partition(".")
        old = (saved.get(section) or {}).get(key) if key else saved.get(section)
        new = now[section][key] if key else now[section]
        if old != new:
            changed.append(dotted if isinstance(new, dict) else f"{dotted} {old} -> {new}")
    if changed:
        raise ConfigError(
            f"--out {run_dir}: the recipe changed since its checkpoints ({'; '.join(changed)}); "
            "use a new --out, start over with --overwrite, or --force-resume"
        )


def _warn_epochs(recipe: Recipe, manifest: Any, total_samples: int) -> None:
    """train.total_tokens (or max_steps) beyond the mix wraps around: say how many epochs (mix known)."""
    from domainlm.pretrain.data import epochs_warning

    how = "train.total_tokens" if recipe.train.total_tokens is not None else "train.max_steps"
    message = None if manifest is None else epochs_warning(total_samples, manifest, how)
    if message is not None:
        log.warning("warning: %s", message)


def _build_mix(prepared: PreparedRun) -> None:
    """Tokenize and pack the recipe's mix YAML (after every check passed), then check what was built."""
    from domainlm.mix.build import build_mix
    from domainlm.mix.config import apply_flags
    from domainlm.mix.manifest import open_mix
    from domainlm.tokenizer.load import check_matches_mix

    inputs = prepared.inputs
    log.info("building mix %s -> %s", inputs.mix_yaml, inputs.mix_dir)
    build_mix(apply_flags(inputs.mix_config, str(inputs.mix_yaml), out=str(inputs.mix_dir)), quiet=True)
    manifest = open_mix(inputs.mix_dir)
    if (
        manifest.seq_len != inputs.seq_len.value
    ):  # the builder did not honour seq_len: a bug, not a user error
        raise AssertionError(f"built mix has seq_len {manifest.seq_len}, asked for {inputs.seq_len}")
    check_matches_mix(inputs.tokenizer, manifest, inputs.tokenizer_source)
    inputs.manifest = manifest
    _warn_epochs(prepared.recipe, manifest, prepared.ds_config["train_batch_size"] * prepared.max_steps)
    found = ckpt.latest_checkpoint(prepared.run_dir)
    if found is not None:  # a run resumed against a mix rebuilt since (e.g. data.build_dir was emptied)
        current = _current_state(inputs, prepared.spec.world_size)
        ckpt.check_resumable(found[1], current, found[0], prepared.force_resume)


def run_spec(prepared: PreparedRun) -> RunSpec:
    """The typed hand-off to the ranks (needs the built mix: its fingerprint is part of it)."""
    inputs, ds = prepared.inputs, prepared.ds_config
    assert inputs.manifest is not None, "run_spec needs the built mix"
    return RunSpec(
        recipe=prepared.recipe,
        run_dir=prepared.run_dir,
        mix_dir=Path(inputs.mix_dir).resolve(),
        mix_fingerprint=inputs.manifest.fingerprint,
        tokenizer_dir=Path(inputs.tokenizer.path).resolve(),
        tokenizer_fingerprint=inputs.tokenizer.fingerprint,
        vocab_size=inputs.tokenizer.vocab_size,
        eos_token_id=inputs.manifest.eos_token_id,
        seq_len=inputs.seq_len.value,
        seq_len_source=inputs.seq_len.source,
        device=prepared.spec.device,
        world_size=prepared.spec.world_size,
        accumulation=ds["gradient_accumulation_steps"],
        global_batch_sequences=global_batch_sequences(prepared.recipe.train, inputs.seq_len.value),
        tokens_per_step=prepared.tokens_per_step.value,
        max_steps=prepared.max_steps,
        ds_config=ds,
        export_only=prepared.export_only,
        force_resume=prepared.force_resume,
    )


def write_run_files(prepared: PreparedRun) -> RunSpec:
    """Build: the run dir (marked; --overwrite empties it), the mix if it is a YAML not built yet, then
    recipe.yaml, run_spec.json (what the ranks read), ds_config.json and the launch command."""
    run_dir = prepared.run_dir
    outside = _run_inputs(prepared.recipe, prepared.inputs, run_dir, prepared.overwrite)
    prepare_run_dir(run_dir, command=COMMAND, overwrite=prepared.overwrite, inputs=outside)
    prepared.overwrite = False  # emptied once; writing the files again must not delete the mix it built
    if prepared.inputs.needs_build:
        _build_mix(prepared)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.yaml", prepared.recipe.to_yaml())
    write_json(run_dir / "ds_config.json", prepared.ds_config)
    spec = run_spec(prepared)
    write_run_spec(spec)
    atomic_write_text(
        run_dir / "launch.sh", "#!/bin/bash\n" + format_command(prepared.command, prepared.spec) + "\n"
    )
    write_launch_files(prepared.spec, run_dir, prepared.recipe.name)
    if prepared.elastic and prepared.resume_from is not None:
        elastic.convert(prepared.resume_from)  # here, not in rank 0 while the others wait on a barrier
    return spec


def launch(prepared: PreparedRun) -> Path:
    """Build the run dir and train through the deepspeed launcher; returns the run dir.

    With --launcher slurm, writes launch.sbatch and returns without training.
    """
    write_run_files(prepared)
    if prepared.spec.launcher == "slurm":
        log.info("wrote %s; submit it with sbatch", prepared.run_dir / "launch.sbatch")
        return prepared.run_dir
    if prepared.spec.launcher == "torchrun" and prepared.spec.num_nodes > 1:
        log.info(
            "wrote %s; run it on each of the %d nodes",
            prepared.run_dir / "launch.sh",
            prepared.spec.num_nodes,
        )
        return prepared.run_dir
    _run_command(prepared.command, prepared)
    return prepared.run_dir


def launch_together(runs: list[PreparedRun]) -> list[Path]:
    """Train several prepared runs one after another in one launch (one process group, one start-up)."""
    if len({replace(run.spec, master_port=0) for run in runs}) != 1:  # each picked its own free port
        raise ConfigError("runs launched together must share device, --num-gpus, --num-nodes and --hostfile")
    for run in runs:
        write_run_files(run)
    _run_command(launch_command(runs[0].spec, [run.run_dir for run in runs]), runs[0])
    return [run.run_dir for run in runs]


def _run_command(command: list[str], prepared: PreparedRun) -> None:
    log.info("launching: %s", format_command(command, prepared.spec))
    preflight.check_build_lock(prepared.spec)
    preempt.clear(prepared.run_dir)
    # Rank output goes to stderr, like our logs, so stdout stays clean for --json.
    result = subprocess.run(command, env=prepared.env, check=False, stdout=sys.stderr)
    # torchrun reports a rank's exit 75 as its own failure (1): the marker rank 0 wrote is what counts.
    if result.returncode != 0 and (prepared.run_dir / preempt.PREEMPTED_NAME).is_file():
        raise ResourceError(
            f"training stopped on a preemption signal (SIGUSR1) after writing a checkpoint in "
            f"{prepared.run_dir / 'checkpoints'}; rerun the same command to resume from it"
        )
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
