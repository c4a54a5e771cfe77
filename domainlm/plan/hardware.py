"""GPU catalog: name or `torch.cuda.get_device_name()` string -> memory and dense peak FLOP/s per dtype.

Peaks are the vendor's dense (no 2:4 sparsity) tensor-core numbers, the denominator of MFU. fp32 is the
plain (non-TF32) rate, because PyTorch runs fp32 matmuls without TF32 unless a user turns it on.
Memory is what `nvidia-smi` reports as total (MiB), which is what a training process can plan against
before the CUDA context (~0.5 GiB) is taken.

Users add or override entries with a YAML file (`domainlm plan --gpu-catalog FILE`):

    gpus:
      mi300x:
        memory_gib: 192
        peak_tflops: {bf16: 1307.4, fp16: 1307.4, fp32: 163.4}
        device_names: ["MI300X"]
        description: AMD Instinct MI300X
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from domainlm.config import StrictModel, read_yaml, validate_config
from domainlm.errors import ConfigError
from domainlm.plan.memory import BYTES_PER_PARAM

GIB = 1024**3
TERA = 1e12

# Canonical dtype names; the aliases let callers pass torch dtype strings ("torch.bfloat16").
DTYPES = ("bf16", "fp16", "fp32", "tf32")
_DTYPE_ALIASES = {
    "bf16": "bf16",
    "bfloat16": "bf16",
    "torch.bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "torch.float16": "fp16",
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "torch.float32": "fp32",
    "tf32": "tf32",
}


@dataclass(frozen=True)
class GpuSpec:
    """One accelerator: usable memory and dense peak FLOP/s per dtype (None = no tensor support)."""

    name: str
    memory_bytes: int
    peak_flops: dict[str, float]
    device_patterns: tuple[str, ...] = field(default=())
    description: str = ""

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB

    def peak(self, dtype: str) -> float | None:
        """Dense peak FLOP/s for `dtype` (bf16/fp16/fp32/tf32 or a torch dtype name); None if unsupported."""
        return self.peak_flops.get(normalize_dtype(dtype))


def normalize_dtype(dtype: object) -> str:
    """'bfloat16' / torch.bfloat16 / 'bf16' -> 'bf16'; unknown names are a ConfigError."""
    key = str(dtype).strip().lower()
    if key not in _DTYPE_ALIASES:
        raise ConfigError(f"dtype {dtype!r}: unknown; use one of {', '.join(DTYPES)}")
    return _DTYPE_ALIASES[key]


def _spec(name, mib, tflops, patterns, description) -> GpuSpec:
    peaks = {k: v * TERA for k, v in tflops.items() if v is not None}
    return GpuSpec(name, int(mib * 1024**2), peaks, tuple(patterns), description)


# Sources: NVIDIA V100 / A100 / H100 / H200 / L4 datasheets (dense, without sparsity). The patterns
# are regexes (case-insensitive) over torch.cuda.get_device_name(); the first match in order wins,
# so the more specific entries come first.
BUILTIN_GPUS: dict[str, GpuSpec] = {
    spec.name: spec
    for spec in [
        _spec("v100-16gb", 16160, {"fp16": 125, "fp32": 15.7}, [r"V100.*16GB"], "V100 SXM2 16GB"),
        _spec("v100-32gb", 32510, {"fp16": 125, "fp32": 15.7}, [r"V100"], "V100 SXM2 32GB"),
        _spec(
            "a100-40gb",
            40960,
            {"bf16": 312, "fp16": 312, "tf32": 156, "fp32": 19.5},
            [r"A100.*40GB"],
            "A100 SXM4 / PCIe 40GB",
        ),
        _spec(
            "a100-80gb",
            81920,
            {"bf16": 312, "fp16": 312, "tf32": 156, "fp32": 19.5},
            [r"A100"],
            "A100 SXM4 / PCIe 80GB",
        ),
        _spec(
            "h100-pcie",
            81559,
            {"bf16": 756, "fp16": 756, "tf32": 378, "fp32": 51.2},
            [r"H100.*PCIe"],
            "H100 PCIe 80GB",
        ),
        _spec(
            "h100-sxm",
            81559,
            {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
            [r"H100"],
            "H100 SXM5 80GB HBM3",
        ),
        _spec(
            "h200",
            143771,
            {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
            [r"H200"],
            "H200 SXM 141GB HBM3e",
        ),
        _spec("l4", 23034, {"bf16": 121, "fp16": 121, "tf32": 60, "fp32": 30.3}, [r"\bL4\b"], "L4 24GB"),
    ]
}

# Common spellings users type for the catalog keys.
_ALIASES = {
    "v100": "v100-32gb",
    "a100": "a100-80gb",
    "a100-40g": "a100-40gb",
    "a100-80g": "a100-80gb",
    "h100": "h100-sxm",
    "h100-80gb": "h100-sxm",
    "h100-sxm5": "h100-sxm",
}


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


class GpuEntry(StrictModel):
    """One GPU in a user catalog YAML."""

    memory_gib: float = Field(gt=0, description="usable device memory in GiB")
    peak_tflops: dict[str, float] = Field(description="dense peak TFLOP/s per dtype: bf16, fp16, fp32, tf32")
    device_names: list[str] = Field(default_factory=list, description="regexes over torch device names")
    description: str = ""


class GpuCatalogFile(StrictModel):
    gpus: dict[str, GpuEntry]


def load_catalog(path: str | Path | None = None) -> dict[str, GpuSpec]:
    """The built-in catalog, extended (or overridden, by name) with the entries of a YAML file."""
    catalog = dict(BUILTIN_GPUS)
    if path is None:
        return catalog
    if not Path(path).is_file():
        what = "is a directory" if Path(path).is_dir() else "no such file"
        raise ConfigError(
            f"--gpu-catalog {path}: {what}; give a YAML file with a `gpus:` mapping "
            "(see `domainlm plan --help`), or leave the flag out for the built-in GPUs"
        )
    parsed = validate_config(GpuCatalogFile, read_yaml(path), str(path))
    for name, entry in parsed.gpus.items():
        peaks = {}
        for dtype, tflops in entry.peak_tflops.items():
            if tflops <= 0:
                raise ConfigError(f"{path}: gpus.{name}.peak_tflops.{dtype}: must be > 0, got {tflops}")
            peaks[normalize_dtype(dtype)] = tflops * TERA
        patterns = tuple(entry.device_names) or (re.escape(name),)
        spec = GpuSpec(_key(name), int(entry.memory_gib * GIB), peaks, patterns, entry.description)
        # User entries go first so their device patterns win over the built-in ones.
        catalog = {spec.name: spec, **{k: v for k, v in catalog.items() if k != spec.name}}
    return catalog


# The largest training clusters built so far hold ~100k-200k GPUs (2024-2025); a model whose
# training states do not fit in this many of the largest catalogued GPU describes no machine.
LARGEST_CLUSTER_GPUS = 200_000
# Adam in mixed precision: bf16 weights + grads, fp32 master weights, momentum and variance (16).
TRAINING_BYTES_PER_PARAM = sum(BYTES_PER_PARAM["bf16"])


def check_trainable(num_params: float, what: str, catalog: dict[str, GpuSpec] | None = None) -> None:
    """ConfigError when the model states alone (16 bytes/param, fully sharded, no activations)
    exceed the memory of the largest cluster ever built from the largest GPU in the catalog."""
    catalog = BUILTIN_GPUS if catalog is None else catalog
    gpu = max(catalog.values(), key=lambda g: g.memory_bytes)
    cluster_bytes = LARGEST_CLUSTER_GPUS * gpu.memory_bytes
    if num_params * TRAINING_BYTES_PER_PARAM <= cluster_bytes:
        return
    most = cluster_bytes / TRAINING_BYTES_PER_PARAM
    raise ConfigError(
        f"{what}: {num_params:.3g} parameters need {num_params * TRAINING_BYTES_PER_PARAM:.3g} bytes of "
        f"training states ({TRAINING_BYTES_PER_PARAM} bytes/param), beyond any known hardware: "
        f"{LARGEST_CLUSTER_GPUS:,} x {gpu.name} ({gpu.memory_gib:.0f} GiB each) hold {most:.2g} parameters "
        "at most; plan a size that fits (today's largest dense models are ~1e12, e.g. --params 7B or 70B)"
    )


def get_gpu(name: str, catalog: dict[str, GpuSpec] | None = None) -> GpuSpec:
    """Look a GPU up by catalog name ('a100-40gb', 'H100 SXM', 'h100'); unknown -> ConfigError."""
    catalog = BUILTIN_GPUS if catalog is None else catalog
    key = _key(name)
    key = key if key in catalog else _ALIASES.get(key, key)
    if key not in catalog:
        raise ConfigError(
            f"--gpu-type {name!r}: unknown GPU; use one of {', '.join(catalog)} "
            "or add it with --gpu-catalog FILE"
        )
    return catalog[key]


def gpu_for_device(device_name: str, catalog: dict[str, GpuSpec] | None = None) -> GpuSpec | None:
    """Match a `torch.cuda.get_device_name()` string ('NVIDIA A100-SXM4-40GB') to a catalog entry."""
    catalog = BUILTIN_GPUS if catalog is None else catalog
    for spec in catalog.values():
        if any(re.search(p, device_name, re.IGNORECASE) for p in spec.device_patterns):
            return spec
    return None
