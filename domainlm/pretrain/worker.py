"""Entry point of each training process the launcher starts: `python -m domainlm.pretrain.worker --run-dir RUN`.

The parent (`domainlm pretrain`) resolved and validated the run and wrote RUN/run_spec.json (a RunSpec);
this process only joins the process group and trains (domainlm.pretrain.loop). Several `--run-dir`
run one after another in the same process group (a sweep of small runs pays the start-up once).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from domainlm.pretrain.engine import shutdown
from domainlm.pretrain.loop import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="domainlm.pretrain.worker")
    parser.add_argument("--run-dir", type=Path, action="append", required=True)
    # The deepspeed launcher appends --local_rank unless told --no_local_rank; LOCAL_RANK is in the env.
    parser.add_argument("--local_rank", type=int, default=None)
    args = parser.parse_args(argv)
    # DeepSpeed calls torch.distributed collectives that torch marks deprecated, once per call site.
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    for run_dir in args.run_dir:
        run(run_dir)
    shutdown()


if __name__ == "__main__":
    main()
