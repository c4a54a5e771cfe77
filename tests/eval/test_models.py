from types import SimpleNamespace

import pytest
import torch

from domainlm.errors import ConfigError, DataError, ResourceError
from domainlm.eval.models import (
    context_length,
    inspect_model,
    model_kind,
    parse_model_specs,
    resolve_device,
    resolve_dtype,
)


def test_model_specs_names_and_validation(tmp_path, llama_dir):
    specs = parse_model_specs([str(llama_dir), f"base={llama_dir}"])
    assert [s.name for s in specs] == [llama_dir.name, "base"]
    with pytest.raises(ConfigError, match="no config.json"):
        parse_model_specs([str(tmp_path)])
    with pytest.raises(ConfigError, match="used twice"):
        parse_model_specs([f"a={llama_dir}", f"a={llama_dir}"])
    with pytest.raises(ConfigError, match="NAME=DIR"):
        parse_model_specs([f"={llama_dir}"])
    with pytest.raises(ConfigError, match="at least one"):
        parse_model_specs([])


def test_kind_and_context_of_each_family(llama_dir, gpt2_dir, bert_dir, t5_dir):
    found = {
        p.name: inspect_model(parse_model_specs([str(p)])[0]) for p in (llama_dir, gpt2_dir, bert_dir, t5_dir)
    }
    assert [(i.kind, i.context_length) for i in found.values()] == [
        ("causal", 64), ("causal", 48), ("masked", 40), ("seq2seq", 512),
    ]  # fmt: skip


def test_kind_from_model_type_and_roberta_offsets():
    assert model_kind(SimpleNamespace(model_type="llama", architectures=None)) == "causal"
    with pytest.raises(DataError, match="not a causal, masked or seq2seq"):
        model_kind(SimpleNamespace(model_type="resnet", architectures=["ResNetModel"]))
    roberta = SimpleNamespace(model_type="roberta", max_position_embeddings=514, pad_token_id=1)
    assert context_length(roberta, "masked") == 512


def test_broken_model_dir_is_a_data_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read"):
        inspect_model(parse_model_specs([str(tmp_path)])[0])


def test_device_and_dtype(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ResourceError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="--device 'tpu'"):
        resolve_device("tpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ConfigError, match="--dtype 'fp8'"):
        resolve_dtype("fp8", torch.device("cpu"))
