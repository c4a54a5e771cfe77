"""Speed switches (domainlm.pretrain.speed): each gives the plain path's loss; what runs on the CPU is
tested here, the GPU-only kernels when a GPU (and their package) is present."""

from __future__ import annotations

import importlib.util
from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from domainlm.errors import ConfigError
from domainlm.pretrain.config import load_recipe
from domainlm.pretrain.loop import prepare_model
from domainlm.pretrain.model import TokenIds
from domainlm.pretrain.speed import (
    check_switches,
    compile_layers,
    decoder_layers,
    optimizer_params,
    trimmed_for_export,
)
from domainlm.pretrain.vocab_init import pad_embeddings

TINY = ["model.hidden_size=32", "model.num_layers=2", "model.num_heads=4", "model.intermediate_size=64",
        "model.tie_embeddings=false"]  # fmt: skip
IDS = TokenIds(vocab_size=300, eos_token_id=3, pad_token_id=0)


def tiny_model(*overrides: str) -> torch.nn.Module:
    model = prepare_model(load_recipe("tiny_cpu", [*TINY, *overrides]), IDS, seq_len=16)
    return model.train()


class OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def loss_grads_and_backward_ops(model: torch.nn.Module) -> tuple[float, list[torch.Tensor], Counter]:
    batch = torch.randint(4, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    loss = model(input_ids=batch, labels=batch).loss
    with OpCounter() as counter:
        loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()], counter.counts


def test_vocabulary_is_padded_to_128_by_default_and_1_turns_it_off():
    assert tiny_model().get_input_embeddings().weight.shape[0] == 384  # 300 -> 3 x 128
    assert tiny_model().get_output_embeddings().weight.shape[0] == 384
    assert tiny_model("model.pad_vocab_to_multiple_of=1").get_input_embeddings().weight.shape[0] == 300


def test_selective_checkpointing_keeps_matmuls_and_recomputes_the_cheap_ops():
    plain, full, selective = (
        loss_grads_and_backward_ops(tiny_model(f"deepspeed.activation_checkpointing={mode}"))
        for mode in ("false", "true", "selective")
    )
    for loss, grads, _ in (full, selective):
        assert loss == pytest.approx(plain[0], rel=1e-6)
        for got, want in zip(grads, plain[1], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # Full recomputes every layer's matmuls in backward; selective recomputes none of them, only the
    # cheap ops (RMSNorm's rsqrt among them), which the plain path never runs in backward.
    assert full[2]["mm"] > plain[2]["mm"] == selective[2]["mm"]
    assert selective[2]["rsqrt"] > plain[2]["rsqrt"]


def test_per_layer_compile_gives_the_same_loss():
    plain = tiny_model()
    compiled = tiny_model()
    # aot_eager traces and runs each layer as a graph without generating C++ (inductor's CPU code
    # generation takes minutes on 2 cores); inductor itself is tested on a GPU below.
    assert compile_layers(compiled, backend="aot_eager") == 2 == len(decoder_layers(compiled))
    want, got = loss_grads_and_backward_ops(plain), loss_grads_and_backward_ops(compiled)
    assert got[0] == pytest.approx(want[0], rel=1e-6)
    for a, b in zip(got[1], want[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_export_drops_the_padding_rows_and_generates_the_same_tokens(tmp_path):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False)  # fmt: skip
    base = LlamaForCausalLM(config).eval()
    padded = LlamaForCausalLM(config)
    padded.load_state_dict(base.state_dict())
    assert pad_embeddings(padded, 128) == 384
    with trimmed_for_export(padded, padded.state_dict(), 300) as state_dict:
        padded.save_pretrained(tmp_path / "export", state_dict=state_dict)
    assert padded.config.vocab_size == 384  # restored after saving
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    assert exported.config.vocab_size == 300 and exported.get_output_embeddings().weight.shape[0] == 300
    prompt = torch.tensor([[5, 17, 42, 99]])
    settings = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    want = base.generate(prompt, **settings)
    assert torch.equal(exported.generate(prompt, **settings), want)
    assert torch.equal(padded.eval().generate(prompt, **settings), want)  # padding rows: the mean logit


def test_fused_adamw_on_cuda_only_and_the_same_losses():
    config = {"optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}}}
    assert optimizer_params(config, "cpu") is config
    assert optimizer_params(config, "cuda")["optimizer"]["params"] == {
        "lr": 1e-3,
        "torch_adam": True,
        "fused": True,
    }
    assert "fused" not in config["optimizer"]["params"]  # the parent's JSON is not changed
    offload = {"optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": False}}}
    assert optimizer_params(offload, "cuda") is offload  # DeepSpeedCPUAdam keeps its own kernel
    # What DeepSpeed does with the JSON's optimizer params on its torch_adam path (its own method, which
    # on that path reads nothing from the engine), then 4 steps: torch's fused kernel also runs on the
    # CPU and gives foreach's losses.
    from deepspeed.runtime.engine import DeepSpeedEngine

    losses = {}
    for accelerator in ("cpu", "cuda"):
        params = dict(optimizer_params(config, accelerator)["optimizer"]["params"])
        optimizer_cls, extra = DeepSpeedEngine.get_optimizer_configuration(None, params, True)
        model = tiny_model()
        optimizer = optimizer_cls(model.parameters(), **params, **extra)
        assert optimizer_cls is torch.optim.AdamW and bool(optimizer.defaults["fused"]) is (
            accelerator == "cuda"
        )
        batch = torch.randint(4, 300, (2, 16), generator=torch.Generator().manual_seed(0))
        losses[accelerator] = []
        for _ in range(4):
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses[accelerator].append(loss.item())
    assert losses["cuda"][-1] < losses["cuda"][0]
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=1e-5)


def test_liger_and_gpu_switches_are_checked_before_launch(monkeypatch):
    recipe = load_recipe("tiny_cpu", ["model.liger_kernels=true"])
    with pytest.raises(
        ConfigError,
        match=r"model.liger_kernels: Liger's kernels are Triton GPU kernels, and launch.device is cpu",
    ):
        check_switches(recipe, "cpu")
    bert = load_recipe("tiny_cpu", ["model.arch=bert", "objective.name=mlm", "model.liger_kernels=true"])
    with pytest.raises(ConfigError, match=r"wired for llama, not arch 'bert'"):
        check_switches(bert, "cuda")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "liger_kernel" else real_find_spec(name, *a),
    )
    with pytest.raises(
        ConfigError, match=r"liger-kernel package is not installed; pip install 'domainlm\[gpu\]'"
    ):
        check_switches(recipe, "cuda")
    check_switches(load_recipe("tiny_cpu"), "cpu")  # nothing to check


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_gpu
@pytest.mark.skipif(
    importlib.util.find_spec("liger_kernel") is None, reason="needs liger-kernel (the gpu extra)"
)
def test_liger_kernels_give_the_same_loss_on_gpu():
    plain = tiny_model("train.precision=fp32").cuda()
    liger = tiny_model("model.liger_kernels=true").cuda()
    liger.load_state_dict(plain.state_dict())
    batch = torch.randint(4, 300, (2, 16), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    want, got = plain(input_ids=batch, labels=batch).loss, liger(input_ids=batch, labels=batch).loss
    assert got.item() == pytest.approx(want.item(), rel=1e-4)


@needs_gpu
def test_per_layer_inductor_compile_gives_the_same_loss_on_gpu():
    plain = tiny_model().cuda()
    compiled = tiny_model().cuda()
    compile_layers(compiled)
    batch = torch.randint(4, 300, (2, 16), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    want, got = plain(input_ids=batch, labels=batch).loss, compiled(input_ids=batch, labels=batch).loss
    assert got.item() == pytest.approx(want.item(), rel=1e-4)
