"""The planner's typed result: `Plan` and its sections; `Plan.to_dict()` is `domainlm plan --json`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from domainlm.plan.memory import MemoryEstimate
from domainlm.plan.recommend import Recommendation
from domainlm.plan.shapes import ModelShape


@dataclass(frozen=True)
class Sizing:
    """Compute-optimal sizes at the plan's compute, and the (N, D) chosen and why."""

    flops: float  # 6·N·D of the chosen (N, D) or the budget
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
    other_fit: str
    other_fit_params: float
    other_fit_tokens: float
    predicted_loss: float  # with the chosen fit; data-constrained when sources are known


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
    best_params: float  # the loss-minimizing N at this compute given the unique data
    best_tokens: float
    best_epochs: float
    one_epoch_params: float  # the N that sees each unique token once at this compute
    sources: list[SourcePlan]


@dataclass(frozen=True)
class ComputePlan:
    flops_6nd: float
    flops_per_token: float  # 6N + 12·L·H·T (PaLM), N = matmul parameters
    flops: float  # tokens x flops_per_token
    attention_share: float  # of flops_per_token
    pflops_days: float
    gpu_type: str | None
    num_gpus: int | None
    peak_flops: float | None
    mfu: float
    mfu_assumed: bool
    gpu_hours: float | None
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
            "teaching": self.teaching,
            "notes": self.notes,
        }
