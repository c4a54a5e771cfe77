"""The one typed reader of a mix directory: no torch, the layout's paths, older manifests."""

import subprocess
import sys

import pytest

from domainlm.errors import DataError
from domainlm.mix.layout import FORMAT
from domainlm.mix.manifest import is_mix_dir, open_mix
from domainlm.testing.mixes import source_entry, write_manifest


def test_reading_a_manifest_does_not_import_torch():
    code = (
        "import sys, domainlm.mix.manifest, domainlm.plan.planner, domainlm.eval.data\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_fields_paths_and_eos_token(tmp_path):
    root = write_manifest(
        tmp_path / "mix", [source_entry("legal"), source_entry("finance")], config={"eos_token": "</s>"}
    )
    mix = open_mix(root)
    assert (mix.format, mix.seq_len, mix.root, mix.path) == (FORMAT, 2048, root, root / "manifest.json")
    assert mix.eos_token == "</s>"  # older manifests: from the mix config
    assert mix.source("finance").val.text_path == "val/finance.jsonl.gz"
    with pytest.raises(DataError, match=r"val/legal.jsonl.gz: held-out text of source 'legal' is missing"):
        mix.val_text_paths()
    for name in ("legal", "finance"):
        (root / "val").mkdir(exist_ok=True)
        (root / "val" / f"{name}.jsonl.gz").write_bytes(b"")
    assert mix.val_text_paths() == [
        ("legal", root / "val/legal.jsonl.gz"),
        ("finance", root / "val/finance.jsonl.gz"),
    ]
    assert is_mix_dir(root) and not is_mix_dir(root / "val")


def test_bad_manifests_are_one_line(tmp_path):
    root = write_manifest(tmp_path / "mix", [source_entry("legal")], dtype="float32")
    with pytest.raises(DataError, match="dtype 'float32' is not one of"):
        open_mix(root)
    (root / "manifest.json").write_bytes(b"\xff{")
    with pytest.raises(DataError, match="unreadable manifest"):
        open_mix(root)
