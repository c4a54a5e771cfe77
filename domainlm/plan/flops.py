"""Model shape + tokens -> training FLOPs, and measured tokens/s + GPU peak -> MFU.

Two counts, both in FLOPs (multiply-add = 2):
- `approx_training_flops` = 6·N·D (Kaplan et al. 2020; Hoffmann et al. 2022 use C = 6ND): 2 FLOPs per
  parameter per token forward, 4 backward. The scaling laws are fitted in this unit.
- `flops_per_token` = 6·N + 12·L·H·T (Chowdhery et al. 2022, PaLM, Appendix B): adds the attention
  score and value matmuls (QK^T and AV, 2·2·T·H per layer per token forward, x3 for training) that
  6N leaves out; with T = 2048 and H = 4096 they add ~6% to a 7B model. This is the numerator of
  model FLOPs utilization (MFU): it ignores activation recomputation, so MFU does not reward it.

N here is the parameters that take part in matmuls: everything except input embedding tables that
are only looked up (a tied embedding counts once, as the LM head). `shapes.ModelShape.matmul_params`
gives it for a shape; using the total count instead overstates FLOPs by 6·V·H per token.

Activation recompute makes the hardware do more than the model needs (Chowdhery et al. 2022 call the
ratio of the two utilizations MFU vs HFU). `hardware_flops_per_token` adds the recomputed work:
- "full": the whole forward again in backward, 2N + 4·L·H·T more per token (8N + 16·L·H·T in all,
  Narayanan et al. 2021's 96·B·s·l·h² = 4 passes of 24·B·s·l·h²).
- "selective" (Korthikanti et al. 2022, "Reducing Activation Recomputation"): only the attention
  core (QK^T and AV, whose inputs are the large s·s score tensors) again, 4·L·H·T more per token.
- "none": hardware FLOPs = model FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

SECONDS_PER_DAY = 86_400.0
PFLOPS_DAY = 1e15 * SECONDS_PER_DAY  # one petaFLOP/s sustained for a day = 8.64e19 FLOPs
RECOMPUTE_MODES: tuple[str, ...] = ("none", "selective", "full")
# Model FLOPs per hardware FLOP: exactly 3/4 with full recompute ((6N + 12LHT) / (8N + 16LHT)); selective
# recompute's ~1% (it depends on the shape) is left to the exact per-token charge.
MODEL_SHARE = {"none": 1.0, "selective": 1.0, "full": 0.75}


def flops_per_token(num_params: float, num_layers: int, hidden_size: int, seq_len: int) -> float:
    """Training FLOPs per token, 6N + 12·L·H·T (PaLM Appendix B; H = heads x head dim = hidden size)."""
    return 6.0 * num_params + 12.0 * num_layers * hidden_size * seq_len


def recompute_flops_per_token(
    num_params: float, num_layers: int, hidden_size: int, seq_len: int, recompute: str
) -> float:
    """FLOPs per token spent recomputing activations in backward (0 without recompute)."""
    if recompute == "full":  # the forward pass again: a third of 6N + 12·L·H·T
        return 2.0 * num_params + 4.0 * num_layers * hidden_size * seq_len
    if recompute == "selective":  # QK^T and AV again: 2·2·T·H per layer
        return 4.0 * num_layers * hidden_size * seq_len
    if recompute == "none":
        return 0.0
    raise ValueError(f"recompute {recompute!r} is not one of {RECOMPUTE_MODES}")


def hardware_flops_per_token(
    num_params: float, num_layers: int, hidden_size: int, seq_len: int, recompute: str
) -> float:
    """Model FLOPs per token plus the recomputed work: the numerator of hardware FLOPs utilization."""
    model = flops_per_token(num_params, num_layers, hidden_size, seq_len)
    return model + recompute_flops_per_token(num_params, num_layers, hidden_size, seq_len, recompute)


def narayanan_training_seconds(
    num_tokens: float, num_params: float, num_gpus: int, flops_per_gpu: float
) -> float:
    """End-to-end training time ≈ 8·T·P / (n·X) (Narayanan et al. 2021 eq. 4): T tokens, P parameters,
    n GPUs each sustaining X FLOP/s counted with full activation recompute (hence 8, not 6)."""
    return 8.0 * num_tokens * num_params / (num_gpus * flops_per_gpu)


def approx_training_flops(num_params: float, num_tokens: float) -> float:
    """C = 6·N·D, the compute unit of the Chinchilla scaling laws."""
    return 6.0 * num_params * num_tokens


def mfu(
    per_token: float, tokens_per_second: float, peak_flops: float | None, num_gpus: int = 1
) -> float | None:
    """Model FLOPs utilization: achieved model FLOP/s over the peak of `num_gpus` GPUs; None if peak unknown.

    `tokens_per_second` is the throughput of those `num_gpus` together (per GPU when num_gpus=1).
    """
    if not peak_flops or num_gpus <= 0:
        return None
    return per_token * tokens_per_second / (peak_flops * num_gpus)


def budget_flops(num_gpus: int, peak_flops: float, hours: float, utilization: float) -> float:
    """Compute a cluster delivers: GPUs x peak FLOP/s x seconds x MFU."""
    return num_gpus * peak_flops * hours * 3600.0 * utilization


def training_seconds(total_flops: float, num_gpus: int, peak_flops: float, utilization: float) -> float:
    """Wall-clock seconds to spend `total_flops` on `num_gpus` GPUs running at `utilization` of peak."""
    return total_flops / (num_gpus * peak_flops * utilization)


def pflops_days(total_flops: float) -> float:
    """FLOPs in petaFLOP/s-days, the unit of GPT-3's and BloombergGPT's compute tables."""
    return total_flops / PFLOPS_DAY


@dataclass(frozen=True)
class Utilization:
    """The fraction of peak a run sustains, as the user gave it: MFU counts model FLOPs, HFU counts
    what the hardware executes (recompute included). kind "assumed" is HFU at the planner's default,
    so a plan that needs recompute is charged its time."""

    kind: str  # "mfu", "hfu" or "assumed"
    value: float

    def charged_per_token(self, model_per_token: float, hardware_per_token: float) -> float:
        """The FLOPs per token that `value` is a fraction of: time = tokens x this / (GPUs x peak x value)."""
        return model_per_token if self.kind == "mfu" else hardware_per_token

    def seconds(
        self, tokens: float, model_per_token: float, hardware_per_token: float, num_gpus: int, peak: float
    ) -> float:
        per_token = self.charged_per_token(model_per_token, hardware_per_token)
        return tokens * per_token / (num_gpus * peak * self.value)

    def mfu_hfu(self, model_per_token: float, hardware_per_token: float) -> tuple[float, float]:
        """(MFU, HFU): the same seconds, counted with the model's and with the hardware's FLOPs."""
        if self.kind == "mfu":
            return self.value, self.value * hardware_per_token / model_per_token
        return self.value * model_per_token / hardware_per_token, self.value
