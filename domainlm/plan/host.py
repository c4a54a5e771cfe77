"""Model size + strategy + GPUs per node -> host RAM per node: loading the model, and offloaded states.

Two moments need host memory, and the larger decides (DeepSpeed's `estimate_zero2/3_model_states_
mem_needs` take the same maximum; a test compares the figures):
- Loading. Without sharded construction every rank on the node builds the whole model in fp32 on
  the CPU before the engine moves it (domainlm's `pretrain.model.build_model` does, as does any
  `from_config`/`from_pretrained` in fp32): 4 bytes/param x GPUs per node. With sharded construction
  (`deepspeed.zero.Init`, ZeRO-3 only) each rank materializes one module at a time and keeps its
  shard: 4 bytes x the largest module x GPUs per node.
- Offload: the states ZeRO-Offload keeps on the host (memory.model_state_bytes' `cpu`) for the GPUs
  of the node.
Both are multiplied by 1.5, DeepSpeed's `additional_buffer_factor`: pinned staging buffers, the
allocator's slack and the Python processes themselves.

Where the planner differs from DeepSpeed's estimator: at ZeRO-2 with offload DeepSpeed charges every
node the whole model's 16 bytes/param and the fp32 load of *all* GPUs (`max(4 * total_gpus, 16)`),
the planner the node's own share (16 bytes/param x its GPUs / the shard group) and its own GPUs'
load; on one node the two are identical, as they are for ZeRO-3 on any number of nodes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from domainlm.errors import ConfigError

HOST_BUFFER_FACTOR = 1.5  # DeepSpeed's additional_buffer_factor
LOAD_BYTES_PER_PARAM = 4  # models are built in fp32 on the host
# A typical 8-GPU training node: DGX A100 (320 GB) has 1 TB of RAM, AWS p4d.24xlarge 1152 GiB, Azure
# ND A100 v4 900 GiB, DGX H100 and p5.48xlarge 2 TiB. A plan that fits 1 TiB fits most of them.
DEFAULT_HOST_MEMORY_BYTES = 1024**4


@dataclass(frozen=True)
class HostMemory:
    """Host RAM per node, bytes: each moment before the buffer factor, and the total after it."""

    load: float  # the whole model in fp32 per rank (no sharded construction)
    load_sharded: float  # with deepspeed.zero.Init (ZeRO-3): the largest module per rank
    offload: float  # offloaded states of the node's GPUs
    sharded_construction: bool  # whether `total` assumes zero.Init
    total: float

    def to_dict(self) -> dict:
        return asdict(self)


def host_memory(
    num_params: float,
    largest_module_params: float,
    cpu_per_gpu: float,
    zero_stage: int,
    gpus_per_node: int,
    zero_init: bool = False,
) -> HostMemory:
    """Host RAM per node (module docstring); zero.Init only applies at ZeRO-3."""
    load = LOAD_BYTES_PER_PARAM * num_params * gpus_per_node
    load_sharded = LOAD_BYTES_PER_PARAM * largest_module_params * gpus_per_node
    sharded = zero_init and zero_stage >= 3
    offload = cpu_per_gpu * gpus_per_node
    total = HOST_BUFFER_FACTOR * max(load_sharded if sharded else load, offload)
    return HostMemory(load, load_sharded, offload, sharded, total)


_UNITS = {"gb": 1e9, "gib": 1024**3, "tb": 1e12, "tib": 1024**4}


def parse_host_memory(text: str) -> float:
    """'1TiB' / '2TB' / '512GiB' / '900GB' -> bytes, for --host-memory."""
    value = text.strip().lower().replace(" ", "")
    unit = next((u for u in sorted(_UNITS, key=len, reverse=True) if value.endswith(u)), None)
    try:
        number = float(value[: -len(unit)]) if unit else float("nan")
    except ValueError:
        number = float("nan")
    if unit is None or not number > 0:
        raise ConfigError(
            f"--host-memory {text!r}: give a size with a unit, e.g. 1TiB, 2TB, 512GiB (RAM per node)"
        )
    return number * _UNITS[unit]


def _gb(x: float) -> str:
    return f"{x / 1e9:,.0f} GB"


def host_note(strategy: str, host: HostMemory, host_memory_bytes: float) -> str:
    """One sentence for a recommendation whose host RAM per node exceeds --host-memory."""
    fix = (
        "use --zero-init (sharded construction) or more nodes"
        if not host.sharded_construction
        else "use more nodes"
    )
    return (
        f"{strategy} needs {_gb(host.total)} of host RAM per node (load {_gb(host.load)}, "
        f"offload {_gb(host.offload)}, x{HOST_BUFFER_FACTOR:g} buffers), more than --host-memory "
        f"{_gb(host_memory_bytes)}; {fix}, or raise --host-memory if the nodes have it"
    )
