"""`domainlm pretrain --recipe NAME|FILE`: recipe -> DeepSpeed ZeRO run dir with checkpoints, metrics and an HF export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.syntax import Syntax
from rich.table import Table

from domainlm.errors import ConfigError
from domainlm.progress import console


def _estimate_table(estimate: dict) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="planner estimate (domainlm.plan)")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in estimate.items():
        table.add_row(
            key, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        )
    return table


def _print_dry_run(report: dict) -> None:
    from domainlm.config import dump_yaml

    console.print("[bold]resolved recipe[/bold]")
    console.print(Syntax(dump_yaml(report["recipe"]), "yaml"))
    console.print("[bold]DeepSpeed config[/bold]")
    console.print(Syntax(json.dumps(report["deepspeed_config"], indent=2), "json"))
    seq_len, tokens, tok, mix = (
        report["seq_len"],
        report["tokens_per_step"],
        report["tokenizer"],
        report["mix"],
    )
    console.print(f"seq_len {seq_len['value']:,} from {seq_len['source']}", markup=False)
    console.print(f"tokens per step {tokens['value']:,} = {tokens['source']}", markup=False)
    console.print(
        f"tokenizer {tok['dir']} ({tok['source']}): {tok['vocab_size']:,} tokens, eos id {tok['eos_token_id']}, "
        f"fingerprint {tok['fingerprint'][:12]}",
        markup=False,
    )
    built = (
        f"built, fingerprint {mix['fingerprint'][:12]}"
        if mix["built"]
        else f"to build from {mix['build_from']}"
    )
    console.print(f"mix {mix['dir']} ({built})", markup=False)
    console.print(
        f"world size {report['world_size']}, gradient accumulation {report['gradient_accumulation_steps']}, "
        f"{report['max_steps']:,} steps, run dir {report['run_dir']}",
        markup=False,
    )
    if report["resume_from"]:
        console.print(f"would resume from {report['resume_from']}")
    console.print("[bold]launch command[/bold]")
    console.print(report["command"], soft_wrap=True, markup=False)
    console.print(_estimate_table(report["estimate"]))


def pretrain(
    recipe: Annotated[
        str, typer.Option(help="Shipped recipe name (legal, finance, medical, tiny_cpu) or YAML path.")
    ],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe key: a.b=value.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<recipe name>).")] = None,
    num_gpus: Annotated[int | None, typer.Option(help="Processes per node (GPUs; CPU ranks on CPU).")] = None,
    num_nodes: Annotated[
        int | None, typer.Option(help="Nodes (needs --hostfile or --launcher slurm).")
    ] = None,
    hostfile: Annotated[str | None, typer.Option(help="DeepSpeed hostfile for multi-node runs.")] = None,
    launcher: Annotated[
        str | None,
        typer.Option(
            help="deepspeed (run now; ssh to --hostfile nodes), torchrun (no ssh; run now on one node, or write "
            "launch.sh to run on each node) or slurm (write an sbatch script that requeues when preempted)."
        ),
    ] = None,
    master_addr: Annotated[
        str | None, typer.Option(help="Rendezvous host every node reaches (default: the first node).")
    ] = None,
    time: Annotated[
        str | None,
        typer.Option(
            "--time", help="Slurm time limit, e.g. 2-00:00:00; SIGUSR1 10 min before it checkpoints."
        ),
    ] = None,
    allow_batch_change: Annotated[
        bool,
        typer.Option(help="On resume, accept another global batch than the checkpoint's (else an error)."),
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="Require a checkpoint to resume from (resuming is automatic).")
    ] = False,
    force_resume: Annotated[
        bool, typer.Option(help="Resume even if the data or tokenizer fingerprint changed.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Start over: empty --out first (only a run dir `domainlm pretrain` wrote).")
    ] = False,
    export_only: Annotated[
        bool, typer.Option(help="Export the latest checkpoint of --out as an HF model dir; no training.")
    ] = False,
    export_init: Annotated[
        Path | None,
        typer.Option(
            "--export-init",
            metavar="DIR",
            help="Write the run's exact initialization (recipe + seed + tokenizer, step 0) as an HF model "
            "dir to DIR, the untrained baseline for `domainlm eval`; no training. --overwrite replaces DIR.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Print recipe, DeepSpeed JSON, command and estimate; run nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only (stdout).")] = False,
) -> None:
    """Pretrain with DeepSpeed ZeRO from a recipe; resumes automatically from the run dir's last checkpoint."""
    from domainlm.pretrain.dry_run import dry_run_report
    from domainlm.pretrain.run import launch, prepare_run

    if export_init is not None:
        _check_export_init_flags(
            resume=resume, force_resume=force_resume, export_only=export_only, dry_run=dry_run
        )
        _export_init(recipe, set_ or [], out, export_init, overwrite, as_json)
        return
    prepared = prepare_run(
        recipe,
        set_ or [],
        out,
        num_gpus=num_gpus,
        num_nodes=num_nodes,
        hostfile=hostfile,
        launcher=launcher,
        master_addr=master_addr,
        time_limit=time,
        allow_batch_change=allow_batch_change,
        resume=resume,
        force_resume=force_resume,
        export_only=export_only,
        overwrite=overwrite,
    )
    if dry_run:
        report = dry_run_report(prepared)
        if as_json:
            print(json.dumps(report, indent=2))
        else:
            _print_dry_run(report)
        return
    run_dir = launch(prepared)
    export = run_dir / "export"
    result = {
        "run_dir": str(run_dir),
        "export": str(export) if (export / "config.json").is_file() else None,
        "sbatch": str(run_dir / "launch.sbatch") if prepared.spec.launcher == "slurm" else None,
        "launch_sh": str(run_dir / "launch.sh") if _per_node(prepared.spec) else None,
        "metrics": str(run_dir / "metrics.jsonl"),
    }
    if as_json:
        print(json.dumps(result, indent=2))
    elif result["sbatch"]:
        console.print(f"wrote {result['sbatch']}; submit it with: sbatch {result['sbatch']}")
    elif result["launch_sh"]:
        console.print(f"wrote {result['launch_sh']}; run it on each of the {prepared.spec.num_nodes} nodes")
    else:
        console.print(f"run dir {run_dir}\nexported model {result['export']}")


def _per_node(spec) -> bool:  # noqa: ANN001 - a LaunchSpec
    return spec.launcher == "torchrun" and spec.num_nodes > 1


def _check_export_init_flags(**flags: bool) -> None:
    """--export-init trains nothing, so the flags about a training run's checkpoints make no sense with it."""
    given = [f"--{name.replace('_', '-')}" for name, on in flags.items() if on]
    if given:
        raise ConfigError(
            f"--export-init writes the initialization without training; drop {', '.join(given)} "
            "(or drop --export-init)"
        )


def _export_init(
    recipe: str, overrides: list[str], run_dir: Path | None, model_dir: Path, overwrite: bool, as_json: bool
) -> None:
    from domainlm.pretrain.init_export import export_init

    written = export_init(recipe, overrides, model_dir, run_dir=run_dir, overwrite=overwrite)
    if as_json:
        print(json.dumps({"init": str(written)}, indent=2))
    else:
        console.print(f"wrote the run's initialization (step 0) to {written}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
