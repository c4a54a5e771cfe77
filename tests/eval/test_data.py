import json

import pytest

from domainlm.assets import sample_corpus
from domainlm.errors import ConfigError, DataError
from domainlm.eval.data import load_domains, resolve_data_specs

from .conftest import TEXTS, write_jsonl_gz


def test_mix_dir_gives_one_domain_per_source_from_its_held_out_text(mix_dir):
    domains = load_domains([str(mix_dir)])
    assert [d.name for d in domains] == ["legal", "finance"]
    assert domains[0].texts == (TEXTS[0], TEXTS[0])
    assert domains[0].num_bytes == 2 * len(TEXTS[0].encode())
    assert domains[1].source == str(mix_dir / "val" / "finance.jsonl.gz")


def test_named_paths_shipped_samples_and_max_docs(tmp_path):
    path = write_jsonl_gz(tmp_path / "notes.jsonl.gz", TEXTS, "x")
    domains = load_domains([f"clinic={path}", str(path), "legal"], max_docs=2)
    assert [d.name for d in domains] == ["clinic", "notes", "legal"]
    assert [d.num_documents for d in domains] == [2, 2, 2]
    assert domains[2].source == str(sample_corpus("legal"))


@pytest.mark.parametrize(
    ("specs", "match"),
    [
        ([], "at least one"),
        (["nowhere/at/all.jsonl"], "not a shipped sample"),
        (["=x.jsonl"], "NAME=PATH"),
        (["legal", "legal"], "given twice"),
    ],
)
def test_bad_data_specs(specs, match):
    with pytest.raises(ConfigError, match=match):
        resolve_data_specs(specs)


def test_bad_mix_and_empty_corpus(tmp_path, mix_dir):
    with pytest.raises(ConfigError, match="mix directory"):
        resolve_data_specs([f"x={mix_dir}"])
    (mix_dir / "val" / "finance.jsonl.gz").unlink()
    with pytest.raises(DataError, match="held-out text of source 'finance' is missing"):
        resolve_data_specs([str(mix_dir)])
    (mix_dir / "manifest.json").write_text(json.dumps({"format": "something/v2"}))
    with pytest.raises(DataError, match="format 'something/v2' is not 'domainlm.mix/v1'"):
        resolve_data_specs([str(mix_dir)])
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "  "}) + "\n")
    with pytest.raises(DataError, match="no readable documents"):
        load_domains([str(empty)])
    with pytest.raises(ConfigError, match="--max-docs 0"):
        load_domains(["legal"], max_docs=0)
