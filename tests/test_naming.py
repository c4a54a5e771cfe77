import pytest

from domainlm.errors import ConfigError
from domainlm.naming import name_from_path, split_named


def test_split_named(tmp_path):
    assert split_named("legal=data/legal.jsonl", "--corpus") == ("legal", "data/legal.jsonl")
    assert split_named("data/legal.jsonl", "--corpus") == (None, "data/legal.jsonl")
    assert split_named("runs/a=b/export", "--model", "DIR") == (None, "runs/a=b/export")  # not a name
    odd = tmp_path / "x=y.jsonl"
    odd.write_text("")
    assert split_named(str(odd), "--corpus") == (None, str(odd))  # an existing path is never split
    with pytest.raises(ConfigError, match=r"--model '=runs/x': expected NAME=DIR or DIR"):
        split_named("=runs/x", "--model", "DIR")
    with pytest.raises(ConfigError, match=r"--ratio 'fin=': expected NAME=SHARE"):
        split_named("fin=", "--ratio", "SHARE")


def test_name_from_path():
    assert name_from_path("data/legal.jsonl.gz") == "legal"
    assert name_from_path("out/tok/") == "tok"
