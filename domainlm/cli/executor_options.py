"""--executor and --ray-address, shared by `curate` and `mix`."""

from __future__ import annotations

from typing import Annotated

import typer

Executor = Annotated[
    str,
    typer.Option(
        "--executor",
        help="local: this machine's processes (the default and the reference); ray: tasks on a Ray cluster.",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray head HOST:PORT (from `ray start --head`), ray://HOST:PORT or auto; default: RAY_ADDRESS, "
        "else a Ray started on this machine.",
    ),
]
