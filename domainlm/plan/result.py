"""The planner's typed result: `Plan` and its sections; `Plan.to_dict()` is `domainlm plan --json`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from domainlm.plan.memory import MemoryEstimate
from domainlm.plan.parallel import MegatronMemory
from domainlm.plan.recommend import NoFit, Recommendation
from domainlm.plan.shapes import ModelShape


@dataclass(frozen=True)
class FitRow:
    """One fit's compute-optimal (N, D) at the plan's compute."""

    name: str
    source: str
    params: float
    tokens: float
    used: bool


@dataclass(frozen=True)
class Sizing:
    """Compute-optimal sizes at the plan's compute, and the (N, D) chosen and why."""

    flops: float  # the model FLOPs the plan spends: tokens x (6N + 12·L·H·T), never above the budget
    budget_flops: float | None  # --flops, or GPUs x peak x hours x utilization; None without a budget
    # "--flops" (model FLOPs), or what the hours buy: hardware FLOPs at HFU / model FLOPs at MFU
    budget_source: str | None
    chosen_by: str
    target_params: float
    params: int  # exact count of the shape
    tokens: float
    tokens_per_param: float
    rule_params: float  # 20 tokens/parameter
    rule_tokens: float
    fit: str
    fit_source: str
    fit_params: float
    fit_tokens: float
    fits: list[FitRow]  # every fit's optimum at this compute, labelled
    loss_fit: str  # the parametric fit the loss comes from (the chosen one, or the default for a power law)
    # nats/token with `loss_fit`; data-constrained when sources are known; None when above ln(vocab)
    predicted_loss: float | None


@dataclass(frozen=True)
class SourcePlan:
    name: str
    available_tokens: float
    ratio: float
    tokens: float
    epochs: float
    effective_tokens: float


@dataclass(frozen=True)
class DataPlan:
    """Unique data against what the plan trains on (Muennighoff et al. 2023)."""

    unique_tokens: float
    tokens: float
    epochs: float
    effective_tokens: float
    short_of_rule: bool  # unique data < the 20 tokens/param optimum at this compute
    short_of_fit: bool  # unique data < the fit's optimum
    # the loss-minimizing N at this compute given the unique data; None outside the fit's validity
    best_params: float | None
    best_tokens: float | None
    best_epochs: float | None
    one_epoch_params: float  # the N that sees each unique token once at this compute
    outside_fit: list[str]  # why the data-constrained fit does not apply here ([] = it does)
    tokens_needed: float  # compute-optimal tokens for the chosen size (the fit's D for N)
    unique_tokens_needed: float  # the same at <= 4 epochs, where repeats are almost as good as new data
    sources: list[SourcePlan]


@dataclass(frozen=True)
class ComputePlan:
    flops_6nd: float  # 6·N·D, the GPT-3 / Chinchilla convention
    pflops_days_6nd: float
    flops_per_token: float  # 6N + 12·L·H·T (PaLM), N = matmul parameters
    flops: float  # tokens x flops_per_token: model FLOPs, the numerator of MFU
    attention_share: float  # of flops_per_token
    pflops_days: float  # of `flops` (attention included)
    recompute: str  # none, selective, full
    hardware_flops_per_token: float  # + the recomputed work (HFU's numerator)
    hardware_flops: float
    gpu_type: str | None
    num_gpus: int | None
    peak_flops: float | None
    mfu: float
    hfu: float
    utilization_given: str  # "mfu", "hfu", or "assumed" (HFU at the default)
    mfu_assumed: bool
    gpu_hours: float | None
    gpu_years: float | None
    days: float | None
    budget_hours: float | None
    cost: float | None


@dataclass
class Plan:
    """The whole plan; `to_dict()` is the `--json` output (keys documented in domainlm/plan/__init__.py)."""

    sizing: Sizing
    data: DataPlan | None
    compute: ComputePlan
    shape: ModelShape
    seq_len: int
    precision: str
    memory: list[MemoryEstimate]
    recommendation: Recommendation | None
    gpu_memory_bytes: float | None
    teaching: dict[str, float]
    notes: list[str] = field(default_factory=list)
    no_fit: NoFit | None = None  # why there is no recommendation although a GPU was given
    flags: list[str] = field(default_factory=list)  # absurd resources, said before anything else
    # Megatron-LM layout (--tensor-parallel/--pipeline-parallel): a separate path from DeepSpeed's.
    megatron: MegatronMemory | None = None
    host_memory_bytes: float | None = None  # --host-memory: RAM per node the plan is checked against

    def to_dict(self) -> dict:
        return {
            "sizing": asdict(self.sizing),
            "data": asdict(self.data) if self.data else None,
            "compute": asdict(self.compute),
            "shape": self.shape.to_dict(),
            "seq_len": self.seq_len,
            "precision": self.precision,
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "memory": [m.to_dict() for m in self.memory],
            "recommendation": asdict(self.recommendation) if self.recommendation else None,
            "reason": asdict(self.no_fit) if self.no_fit else None,
            "flags": self.flags,
            "teaching": self.teaching,
            "megatron": self.megatron.to_dict() if self.megatron else None,
            "host_memory_bytes": self.host_memory_bytes,
            "notes": self.notes,
        }
