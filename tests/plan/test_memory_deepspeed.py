"""Model states and host RAM against DeepSpeed's own estimators, called for real (DS_ACCELERATOR=cpu).

`estimate_zero2_model_states_mem_needs(total_params, num_gpus_per_node, num_nodes, cpu_offload,
additional_buffer_factor)` and `estimate_zero3_model_states_mem_needs(total_params,
largest_layer_params, ..., cpu_offload, cpu_offload_params, zero_init, ...)` return (cpu bytes per
node, gpu bytes per GPU[, largest layer memory]); the planner must agree within 2%.
"""

import os

import pytest

from domainlm.plan.host import host_memory
from domainlm.plan.memory import STRATEGIES, model_state_bytes
from domainlm.plan.shapes import make_shape

os.environ.setdefault("DS_ACCELERATOR", "cpu")
stage_1_and_2 = pytest.importorskip("deepspeed.runtime.zero.stage_1_and_2")
stage3 = pytest.importorskip("deepspeed.runtime.zero.stage3")

BY_NAME = {s.name: s for s in STRATEGIES}
# Published shapes: Llama-2-7B (6.74B), Llama-3-8B (8.03B, vocab 128,256, GQA 8), Llama-2-70B (69.0B).
SHAPES = {
    "llama-2-7b": make_shape("llama", 32, 4096, 32, 32000, ffn_size=11008),
    "llama-3-8b": make_shape("llama", 32, 4096, 32, 128256, num_kv_heads=8, ffn_size=14336),
    "llama-2-70b": make_shape("llama", 80, 8192, 64, 32000, num_kv_heads=8, ffn_size=28672),
}
LAYOUTS = [(8, 1), (8, 4)]  # GPUs per node, nodes


def _planner(shape, strategy, gpn, nodes, zero_init=False):
    n = shape.num_params
    states = model_state_bytes(
        n, "bf16", BY_NAME[strategy], gpn * nodes, largest_module_params=shape.largest_module_params()
    )
    host = host_memory(
        n, shape.largest_module_params(), states.cpu, BY_NAME[strategy].zero_stage, gpn, zero_init
    )
    return states.gpu_total, host.total


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize(("gpn", "nodes"), LAYOUTS)
@pytest.mark.parametrize(
    ("strategy", "offload", "offload_params"),
    [("zero3", False, False), ("zero3+offload-opt", True, False), ("zero3+offload-all", True, True)],
)
@pytest.mark.parametrize("zero_init", [True, False])
def test_zero3_matches_deepspeed_estimator(name, gpn, nodes, strategy, offload, offload_params, zero_init):
    """DeepSpeed 0.19 `estimate_zero3_model_states_mem_needs`: GPU 18 bytes/param/Nd + 4 x largest
    layer (2 + 2 less with offload), CPU per node x1.5; the planner within 2%."""
    shape = SHAPES[name]
    # DeepSpeed's model_to_params: the largest module's own parameters (here the V x H embedding).
    largest = shape.largest_module_params()
    assert largest == shape.vocab_size * shape.hidden_size
    ds_cpu, ds_gpu, _ = stage3.estimate_zero3_model_states_mem_needs(
        shape.num_params, largest, gpn, nodes, offload, offload_params, zero_init
    )
    gpu, cpu = _planner(shape, strategy, gpn, nodes, zero_init)
    assert gpu == pytest.approx(ds_gpu, rel=0.02)
    assert cpu == pytest.approx(ds_cpu, rel=0.02)


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize(("strategy", "offload"), [("zero2", False), ("zero2+offload-opt", True)])
def test_zero2_matches_deepspeed_estimator_on_one_node(name, strategy, offload):
    """DeepSpeed `estimate_zero2_model_states_mem_needs`: GPU 2 + 18/Nd bytes/param (2 with offload),
    CPU 4 bytes/param per GPU of the node x1.5 (offload: max(4 x GPUs, 16) x1.5); within 2%."""
    shape = SHAPES[name]
    ds_cpu, ds_gpu = stage_1_and_2.estimate_zero2_model_states_mem_needs(shape.num_params, 8, 1, offload)
    gpu, cpu = _planner(shape, strategy, 8, 1)
    assert gpu == pytest.approx(ds_gpu, rel=0.02)
    assert cpu == pytest.approx(ds_cpu, rel=0.02)


def test_zero2_multi_node_differs_from_deepspeed_where_documented():
    """Across nodes the planner charges each node its own GPUs' share; DeepSpeed's ZeRO-2 estimator
    charges every node the whole model (16 bytes/param) and the fp32 load of all GPUs (host.py)."""
    shape = SHAPES["llama-2-7b"]
    n = shape.num_params
    ds_cpu, ds_gpu = stage_1_and_2.estimate_zero2_model_states_mem_needs(n, 8, 4, True)
    gpu, cpu = _planner(shape, "zero2+offload-opt", 8, 4)
    assert gpu == pytest.approx(ds_gpu, rel=0.02)  # the GPU side agrees
    assert ds_cpu == int(n * 4 * 32 * 1.5)  # DeepSpeed: max(4 x 32 GPUs, 16)
    assert cpu == pytest.approx(n * 4 * 8 * 1.5)  # planner: the node's 8 GPUs load the fp32 model
