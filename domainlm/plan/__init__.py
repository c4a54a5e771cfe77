"""Compute planning: budget / size / tokens / data / hardware -> model shape, FLOPs, time, memory per GPU.

Module API (pretrain's `--dry-run` and training metrics use it):

    from domainlm.plan import PlanInputs, make_plan
    plan = make_plan(PlanInputs(params=7e9, gpu_type="h100-sxm", num_gpus=8, tokens=140e9))
    plan.recommendation.memory_per_gpu, plan.recommendation.step_seconds, plan.compute.days

    from domainlm.plan.memory import STRATEGIES, estimate_memory     # one strategy, one micro-batch
    from domainlm.plan.flops import flops_per_token, mfu             # 6N + 12·L·H·T; MFU
    from domainlm.plan.flops import hardware_flops_per_token         # + recompute (HFU's numerator)
    from domainlm.plan.progress import run_progress                  # a run's metrics -> MFU/HFU, ETA
    from domainlm.plan.hardware import get_gpu, gpu_for_device       # catalog; device name -> GpuSpec | None
    from domainlm.plan.shapes import make_shape, llama_shape_for     # exact parameter counts

Modules: hardware (GPU catalog), flops (model/hardware FLOPs, MFU/HFU), scaling (Chinchilla rule,
Hoffmann rounded/unrounded/Approaches 1-2, Besiroglu, Kaplan, Muennighoff data-constrained), shapes, memory (ZeRO paper and DeepSpeed
model states, offload, optimizers, shard groups), activations (per tensor, the loss peak), host (RAM
per node), parallel (Megatron-LM t/p/SP memory and bubble), report_memory (their tables),
inputs (PlanInputs, mix manifest reader), recommend (strategy and batch schedule), result (Plan
and its sections), planner (make_plan -> Plan), recipe (--write-recipe), progress (--from-run).

`Plan.to_dict()` is `domainlm plan --json`. Units: FLOPs, parameters, tokens and bytes are plain
numbers (bytes, not GB); times in hours/days/seconds as named. Keys:
- sizing: flops (model FLOPs the plan spends, tokens x (6N + 12·L·H·T), never above the budget),
  budget_flops (--flops or the hardware budget; null without one), budget_source ("--flops", or the
  hours' "hardware FLOPs ... at HFU" / "model FLOPs ... at MFU"; the fits size N with the model
  FLOPs' share: 3/4 of hardware FLOPs under full recompute), chosen_by, target_params, params
  (exact, of the shape), tokens, tokens_per_param, rule_params/rule_tokens (20 tokens/param), fit /
  fit_source / fit_params / fit_tokens (the fit used), fits: [{name, source, params, tokens, used}]
  (every fit's optimum at C = 6ND), loss_fit (the parametric fit the loss comes from),
  predicted_loss (nats/token, data-constrained if data known; null when above ln(vocab)).
- data (null without --mix / --domain-tokens): unique_tokens, tokens, epochs, effective_tokens
  (Muennighoff), short_of_rule, short_of_fit, best_params / best_tokens / best_epochs (the
  loss-minimizing split for the unique data; null outside the data-constrained fit's validity),
  outside_fit (why it does not hold: [] when it does), tokens_needed / unique_tokens_needed (the
  chosen size's compute-optimal tokens; unique at 4 epochs), one_epoch_params, sources: [{name,
  available_tokens, ratio, tokens, epochs, effective_tokens}].
- compute: flops_6nd / pflops_days_6nd (the GPT-3/Chinchilla convention), flops_per_token (PaLM),
  flops (tokens x flops_per_token) / pflops_days, attention_share, recompute (none, selective,
  full), hardware_flops_per_token / hardware_flops (with recompute), gpu_type, num_gpus, peak_flops
  (dense, at the precision), mfu, hfu, utilization_given (mfu, hfu or assumed), mfu_assumed,
  gpu_hours, gpu_years, days, budget_hours, cost (USD, with --price-per-gpu-hour).
- shape: arch, num_layers, hidden_size, num_heads, num_kv_heads, ffn_size, vocab_size,
  tie_embeddings, max_positions, head_dim, num_params.
- seq_len, precision, gpu_memory_bytes.
- memory: one row per strategy (ddp, zero1, zero2, zero3, zero2+offload-opt, zero3+offload-opt,
  zero3+offload-all) at the recommended micro-batch and checkpointing: strategy, zero_stage,
  offload, fsdp (the FSDP equivalent or "none"), micro_batch, shard_group_size, weights, grads
  (16-bit), grads_fp32 (DeepSpeed's fp32 partition), optimizer, gathered (ZeRO-3's largest module),
  activations, working, total, model_states_paper (the ZeRO paper's 2+2+K, no offload),
  cpu_per_gpu (bytes per GPU in host memory), fits, max_micro_batch, host_per_node (host RAM per
  node, x1.5), host_load_per_node, host_load_sharded_per_node (with zero.Init), host_fits.
- recommendation (null without --gpu-type or when nothing fits): strategy, zero_stage, offload,
  activation_checkpointing, recompute, num_gpus, micro_batch, max_micro_batch, useful_micro_batch,
  fits_useful, gradient_accumulation, global_batch_sequences, global_batch_tokens, steps,
  memory_per_gpu, cpu_per_node, host_per_node, step_seconds, total_hours, notes.
- teaching: weights_fp32_bytes, weights_bf16_bytes, weights_int8_bytes, train_states_bytes_per_param
  (the ZeRO paper's 2+2+K: 16 for AdamW in mixed precision), train_states_bytes,
  train_upper_bytes_per_param (as DeepSpeed allocates, with fp32 gradients: 20), train_upper_bytes.
- megatron (null without --tensor-parallel/--pipeline-parallel): tensor, pipeline, data,
  sequence_parallel, recompute, params_per_gpu, model_states, activations (first stage), total,
  micro_batches, bubble_fraction, fits. host_memory_bytes: --host-memory.
- reason (null unless --gpu-type was given and nothing fits; then exit status 3): {constraint
  ("micro-batch", "memory" or "host RAM"), message}.
- flags: absurd resources (more than 1,000 GPU-years, HFU above 100%), printed first.
- notes: assumptions and warnings, one sentence each.
"""

from domainlm.plan.inputs import DataSource, PlanInputs, ShapeSpec
from domainlm.plan.planner import Plan, make_plan

__all__ = ["DataSource", "Plan", "PlanInputs", "ShapeSpec", "make_plan"]
