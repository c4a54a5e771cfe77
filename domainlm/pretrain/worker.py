"""Entry point of each training process the launcher starts: `python -m domainlm.pretrain.worker --run-dir RUN`.

The parent (`domainlm pretrain`) resolved and validated the run and wrote RUN/run_spec.json (a RunSpec);
this process only checks it can see the run dir, joins the process group and trains
(domainlm.pretrain.loop). Several `--run-dir` run one after another in the same process group (a
sweep of small runs pays the start-up once). A user error prints one `error:` line naming this node.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import warnings
from pathlib import Path

from domainlm.errors import DataError, DomainLMError
from domainlm.pretrain import preempt
from domainlm.pretrain.spec import SPEC_NAME


def check_visible(run_dir: Path) -> None:
    """Ranks on other nodes read and write the run dir the launch host prepared: it must be on storage
    every node mounts at the same path. One line naming the node and rank if not."""
    node, rank = socket.gethostname(), os.environ.get("RANK", "?")
    if not (run_dir / SPEC_NAME).is_file():
        raise DataError(
            f"{run_dir / SPEC_NAME}: not found on node {node} (rank {rank}); the run dir must be on a shared "
            "filesystem every node mounts at the same path: use such a --out (or run `domainlm pretrain` first)"
        )
    if not os.access(run_dir, os.W_OK):
        raise DataError(
            f"{run_dir}: not writable on node {node} (rank {rank}); ranks write logs and checkpoints there: "
            "mount it read-write on every node"
        )


def main(argv: list[str] | None = None) -> None:
    from domainlm.pretrain.engine import shutdown
    from domainlm.pretrain.loop import run

    parser = argparse.ArgumentParser(prog="domainlm.pretrain.worker")
    parser.add_argument("--run-dir", type=Path, action="append", required=True)
    # The deepspeed launcher appends --local_rank unless told --no_local_rank; LOCAL_RANK is in the env.
    parser.add_argument("--local_rank", type=int, default=None)
    args = parser.parse_args(argv)
    # DeepSpeed calls torch.distributed collectives that torch marks deprecated, once per call site.
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    preempt.install()
    try:
        for run_dir in args.run_dir:
            check_visible(run_dir)
            run(run_dir)
    except DomainLMError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except SystemExit as exc:
        if exc.code == preempt.PREEMPTED_EXIT:
            shutdown()  # every rank saved and agreed: leave the process group cleanly
        raise
    shutdown()


if __name__ == "__main__":
    main()
