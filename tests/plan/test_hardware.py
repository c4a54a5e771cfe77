import pytest

from domainlm.errors import ConfigError
from domainlm.plan.hardware import BUILTIN_GPUS, get_gpu, gpu_for_device, load_catalog, normalize_dtype


@pytest.mark.parametrize(
    ("device_name", "key"),
    [
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA A100-PCIE-40GB", "a100-40gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA A100 80GB PCIe", "a100-80gb"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA L4", "l4"),
        ("Tesla V100-SXM2-16GB", "v100-16gb"),
        ("Tesla V100-SXM2-32GB", "v100-32gb"),
    ],
)
def test_device_names_match_catalog(device_name, key):
    assert gpu_for_device(device_name).name == key


def test_unknown_device_is_none():
    assert gpu_for_device("NVIDIA L40S") is None
    assert gpu_for_device("cpu") is None


def test_peaks_are_dense_datasheet_numbers():
    assert get_gpu("A100-40GB").peak("bf16") == 312e12
    assert get_gpu("h100 sxm").peak("torch.bfloat16") == pytest.approx(989.4e12)
    assert get_gpu("a100_80gb").peak("float32") == 19.5e12
    assert get_gpu("v100").peak("bf16") is None  # Volta has no bf16 tensor cores
    assert get_gpu("a100-40gb").memory_gib == 40.0
    assert set(BUILTIN_GPUS) >= {"v100-32gb", "a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "l4"}


def test_unknown_gpu_and_dtype_name_the_fix():
    with pytest.raises(ConfigError, match="--gpu-type 'b200'.*a100-40gb"):
        get_gpu("b200")
    with pytest.raises(ConfigError, match="dtype 'int8'"):
        normalize_dtype("int8")


def test_user_catalog_extends_and_overrides(tmp_path):
    path = tmp_path / "gpus.yaml"
    path.write_text(
        "gpus:\n"
        "  mi300x: {memory_gib: 192, peak_tflops: {bf16: 1307.4, fp32: 163.4}, device_names: [MI300X]}\n"
        "  a100-40gb: {memory_gib: 39.5, peak_tflops: {bf16: 300}}\n"
    )
    catalog = load_catalog(path)
    assert get_gpu("MI300X", catalog).peak("bf16") == pytest.approx(1307.4e12)
    assert gpu_for_device("AMD Instinct MI300X", catalog).name == "mi300x"
    assert get_gpu("a100-40gb", catalog).peak("bf16") == pytest.approx(300e12)
    assert "h100-sxm" in catalog


def test_user_catalog_rejects_typos_and_bad_values(tmp_path):
    path = tmp_path / "gpus.yaml"
    path.write_text("gpus:\n  x: {memory_gb: 10, peak_tflops: {bf16: 1}}\n")
    with pytest.raises(ConfigError, match="gpus.x.memory_gb: unknown key"):
        load_catalog(path)
    path.write_text("gpus:\n  x: {memory_gib: 10, peak_tflops: {bf16: -1}}\n")
    with pytest.raises(ConfigError, match=r"peak_tflops.bf16: must be > 0"):
        load_catalog(path)
