"""Compute planning: budget / size / tokens / data / hardware -> model shape, FLOPs, time, memory per GPU.

Module API (pretrain's `--dry-run` and training metrics use it):

    from domainlm.plan import PlanInputs, make_plan
    plan = make_plan(PlanInputs(params=7e9, gpu_type="h100-sxm", num_gpus=8, tokens=140e9))
    plan.recommendation.memory_per_gpu, plan.recommendation.step_seconds, plan.compute.days

    from domainlm.plan.memory import STRATEGIES, estimate_memory     # one strategy, one micro-batch
    from domainlm.plan.flops import flops_per_token, mfu             # 6N + 12·L·H·T; MFU
    from domainlm.plan.hardware import get_gpu, gpu_for_device       # catalog; device name -> GpuSpec | None
    from domainlm.plan.shapes import make_shape, llama_shape_for     # exact parameter counts

Modules: hardware (GPU catalog), flops, scaling (Chinchilla rule, Hoffmann / Besiroglu fits,
Muennighoff data-constrained), shapes, memory (ZeRO stages, offload, Korthikanti activations),
inputs (PlanInputs, mix manifest reader), recommend (strategy and batch schedule), result (Plan
and its sections), planner (make_plan -> Plan), recipe (--write-recipe).

`Plan.to_dict()` is `domainlm plan --json`. Units: FLOPs, parameters, tokens and bytes are plain
numbers (bytes, not GB); times in hours/days/seconds as named. Keys:
- sizing: flops (the compute the plan spends, in 6ND units or the hardware budget), chosen_by,
  target_params, params (exact, of the shape), tokens, tokens_per_param, rule_params/rule_tokens
  (20 tokens/param), fit / fit_source / fit_params / fit_tokens (the fit used), other_fit /
  other_fit_params / other_fit_tokens, predicted_loss (nats/token, data-constrained if data known).
- data (null without --mix / --domain-tokens): unique_tokens, tokens, epochs, effective_tokens
  (Muennighoff), short_of_rule, short_of_fit, best_params / best_tokens / best_epochs (the
  loss-minimizing split for the unique data), one_epoch_params, sources: [{name,
  available_tokens, ratio, tokens, epochs, effective_tokens}].
- compute: flops_6nd, flops_per_token (PaLM), flops (tokens x flops_per_token), attention_share,
  pflops_days, gpu_type, num_gpus, peak_flops (dense, at the precision), mfu, mfu_assumed,
  gpu_hours, days, budget_hours, cost (USD, with --price-per-gpu-hour).
- shape: arch, num_layers, hidden_size, num_heads, num_kv_heads, ffn_size, vocab_size,
  tie_embeddings, max_positions, head_dim, num_params.
- seq_len, precision, gpu_memory_bytes.
- memory: one row per strategy (ddp, zero1, zero2, zero3, zero2+offload-opt, zero3+offload-opt,
  zero3+offload-all) at the recommended micro-batch and checkpointing: strategy, zero_stage,
  offload, micro_batch, weights, grads, optimizer, activations, working, total, cpu_per_gpu (bytes
  per GPU in host memory), fits, max_micro_batch.
- recommendation (null without --gpu-type or when nothing fits): strategy, zero_stage, offload,
  activation_checkpointing, num_gpus, micro_batch, max_micro_batch, useful_micro_batch,
  fits_useful, gradient_accumulation, global_batch_sequences, global_batch_tokens, steps,
  memory_per_gpu, cpu_per_node, step_seconds, total_hours, notes.
- teaching: weights_fp32_bytes, weights_bf16_bytes, train_states_bytes_per_param (16),
  train_states_bytes, train_upper_bytes_per_param (24), train_upper_bytes.
- notes: assumptions and warnings, one sentence each.
"""

from domainlm.plan.inputs import DataSource, PlanInputs, ShapeSpec
from domainlm.plan.planner import Plan, make_plan

__all__ = ["DataSource", "Plan", "PlanInputs", "ShapeSpec", "make_plan"]
