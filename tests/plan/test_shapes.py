import pytest

from domainlm.errors import ConfigError
from domainlm.plan.shapes import llama_shape_for, make_shape


@pytest.mark.parametrize(
    ("shape_args", "published"),
    [
        # GPT-2 small: 124,439,808 (HF gpt2 num_parameters()).
        (("gpt2", 12, 768, 12, 50257, None, None, None, 1024), 124_439_808),
        # GPT-NeoX-20B (Black et al. 2022): 44 x 6144, vocab 50,432, untied head.
        (("neox", 44, 6144, 64, 50432), 20_554_567_680),
        # BLOOM 176B (BigScience 2022): 70 x 14336, vocab 250,880.
        (("bloom", 70, 14336, 112, 250880), 176_247_271_424),
        # BloombergGPT (Wu et al. 2023, BLOOM-style): 70 x 7680, vocab 131,072 -> "50.6B".
        (("bloom", 70, 7680, 40, 131072), 50_558_868_480),
        # Llama 2 70B: GQA 8 KV heads, ffn 28672.
        (("llama", 80, 8192, 64, 32000, 8, 28672), 68_976_648_192),
        # Llama 3 8B: vocab 128,256, GQA 8, ffn 14336.
        (("llama", 32, 4096, 32, 128256, 8, 14336), 8_030_261_248),
    ],
)
def test_published_parameter_counts(shape_args, published):
    assert make_shape(*shape_args).num_params == published


def test_llama_shape_for_recovers_llama_7b_and_13b():
    seven = llama_shape_for(7e9, 32000)
    assert (seven.num_layers, seven.hidden_size, seven.num_heads, seven.ffn_size) == (32, 4096, 32, 11008)
    assert seven.num_params == 6_738_415_616  # LLaMA-7B
    thirteen = llama_shape_for(13e9, 32000)
    assert (thirteen.num_layers, thirteen.hidden_size, thirteen.ffn_size) == (40, 5120, 13824)
    assert thirteen.num_params == 13_015_864_320  # Llama 2 13B


@pytest.mark.parametrize("target", [3e7, 1.25e8, 1e9, 3e9, 30e9, 70e9, 175e9])
def test_llama_shape_for_hits_target_within_tolerance(target):
    shape = llama_shape_for(target, 32000)
    assert abs(shape.num_params / target - 1) <= 0.05
    assert shape.hidden_size % shape.num_heads == 0 and shape.num_heads % shape.num_kv_heads == 0
    assert (shape.num_kv_heads == 8) == (target >= 30e9)


def test_matmul_params_exclude_lookup_tables():
    untied = make_shape("llama", 2, 64, 4, 1000)
    assert untied.matmul_params == untied.num_params - 1000 * 64
    tied = make_shape("gpt2", 2, 64, 4, 1000, max_positions=128)
    # wte doubles as the LM head (counted once); wpe is only looked up.
    assert tied.matmul_params == tied.num_params - 128 * 64


def test_shape_validation_names_flags():
    with pytest.raises(ConfigError, match="--hidden 100 is not divisible by --heads 3"):
        make_shape("llama", 2, 100, 3, 1000)
    with pytest.raises(ConfigError, match="--heads 4 is not divisible by --kv-heads 3"):
        make_shape("llama", 2, 64, 4, 1000, num_kv_heads=3)
    with pytest.raises(ConfigError, match="--layers must be > 0"):
        make_shape("llama", 0, 64, 4, 1000)
    with pytest.raises(ConfigError, match="--kv-heads applies to --arch llama only"):
        make_shape("gpt2", 2, 64, 4, 1000, num_kv_heads=2)
    with pytest.raises(ConfigError, match="--arch 'mamba'"):
        make_shape("mamba", 2, 64, 4, 1000)
    with pytest.raises(ConfigError, match="--params must be > 0"):
        llama_shape_for(0, 1000)


@pytest.mark.parametrize(
    ("arch", "config_args"),
    [
        ("llama", dict(vocab_size=1000, hidden_size=64, intermediate_size=2000, num_hidden_layers=2,
                       num_attention_heads=4)),
        ("llama", dict(vocab_size=5000, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                       num_attention_heads=4)),
        ("bloom", dict(vocab_size=100, hidden_size=96, n_layer=2, n_head=4)),
    ],
)  # fmt: skip
def test_largest_module_is_deepspeeds_largest_layer(arch, config_args):
    """DeepSpeed's zero3 `model_to_params`: the most parameters any one module owns directly."""
    transformers = pytest.importorskip("transformers")
    import torch

    config_cls = transformers.LlamaConfig if arch == "llama" else transformers.BloomConfig
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config_cls(**config_args))
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    c = config_args
    if arch == "llama":
        shape = make_shape("llama", 2, 64, 4, c["vocab_size"], ffn_size=c["intermediate_size"])
    else:
        shape = make_shape("bloom", 2, 96, 4, 100)
    assert shape.largest_module_params() == largest


def test_pinned_params_are_used_exactly():
    """--params 7.5B (the ZeRO paper's model) on the nearest Llama shape: N is 7.5e9 exactly."""
    from domainlm.plan.shapes import pin_params

    shape = pin_params(llama_shape_for(7.5e9, 32000), 7.5e9)
    assert shape.num_params == 7_500_000_000 and shape.shape_params != shape.num_params
    assert shape.matmul_params == 7_500_000_000 - 32000 * shape.hidden_size
    assert shape.to_dict()["shape_params"] == shape.shape_params
