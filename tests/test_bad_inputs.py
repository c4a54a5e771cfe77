"""Issue 10, section 4: every bad input is one `error:` line, exit 2, and nothing written.

One parametrized test runs each row's real command through `domainlm.cli.main` (in process, so
the table stays fast); `test_bad_input_in_a_real_process` runs one row as `python -m domainlm`.
Each case builds its inputs in a fresh work directory (the current directory during the run)
and checks that no file in it was added, removed or changed. HOME points at a temp directory.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from domainlm import cli

TEXTS = [
    "The court held that res judicata barred the second action.",
    "Net income rose 12% to $4.1 million; the board declared a dividend.",
    "Patient presented with dyspnea and was given 5 mg q.i.d. for ten days.",
] * 4
CONTEXT = 32  # the tiny model's context, in tokens


# ------------------------------------------------------------------------------- inputs, built once


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def _truncated_gz(path: Path) -> Path:
    data = gzip.compress(
        "".join(json.dumps({"text": f"{t} {i}"}) + "\n" for i, t in enumerate(TEXTS * 20)).encode()
    )
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_gz(path: Path) -> Path:
    """A gzip header, then bytes that are not a deflate stream."""
    data = bytearray(gzip.compress(("".join(json.dumps({"text": t}) + "\n" for t in TEXTS * 20)).encode()))
    for i in range(12, len(data) - 8):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))
    return path


def _corrupt_parquet(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": TEXTS * 10}), path)
    data = bytearray(path.read_bytes())
    for i in range(4, 120):  # the first data page (its header and values); magic and footer intact
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    """A tiny GPT-2 (32-token context) with its tokenizer; a tiny mix; a bigger tokenizer than the mix's."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from tests.pretrain.tiny import build_mix, build_tokenizer, read_docs

    root = tmp_path_factory.mktemp("bad_inputs_assets")
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )  # fmt: skip
    raw.train_from_iterator(TEXTS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    config = GPT2Config(n_embd=16, n_layer=1, n_head=2, n_positions=CONTEXT, vocab_size=len(tokenizer),
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    model_dir = root / "gpt2"
    GPT2LMHeadModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    docs = {"legal": read_docs("legal", 8, 2000), "general": read_docs("general", 8, 2000)}
    texts = [t for group in docs.values() for t in group]
    mix_tokenizer = build_tokenizer(root / "tok384", texts, vocab_size=384)
    return {
        "model": model_dir,
        "mix_tokenizer": mix_tokenizer,
        "big_tokenizer": build_tokenizer(root / "tok512", texts, vocab_size=512),
        "mix": build_mix(root / "mix", mix_tokenizer, docs, seq_len=64),
    }


def _recipe(work: Path, assets: dict[str, Path], **data) -> Path:
    recipe = {
        "name": "tiny",
        "model": {
            "arch": "llama",
            "hidden_size": 64,
            "num_layers": 2,
            "num_heads": 4,
            "intermediate_size": 128,
        },
        "data": {"mix": str(assets["mix"]), "seq_len": 64, **data},
        "train": {"global_batch_sequences": 8, "micro_batch_size": 2, "max_steps": 4, "precision": "fp32"},
        "launch": {"device": "cpu", "num_gpus": 2},
    }
    path = work / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _mix_yaml(work: Path, corpus: Path, tokenizer: Path | str = "gpt2", text: str | None = None) -> Path:
    path = work / "mix.yaml"
    path.write_text(
        text
        or f"sources:\n  legal:\n    paths: [{corpus}]\n    ratio: 1.0\nseq_len: 16\ntokenizer: {tokenizer}\n"
    )
    return path


# ----------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    """One row of section 4: build inputs in `work`, return (argv, regex the error line must match)."""

    id: str
    build: Callable[[Path, dict[str, Path]], tuple[list[str], str]]


def _cli(flags: str, *values: str | Path) -> list[str]:
    """'tokenizer train -q' + values -> argv; every command writes to WORK/out unless told otherwise."""
    return [*flags.split(), *(str(v) for v in values)]


def _corpus_commands(kind: str, make: Callable[[Path], Path], name: str, label: str) -> list[Row]:
    """The same damaged corpus file WORK/NAME through every command that reads corpora."""
    commands = {
        "curate": lambda w, bad, a: _cli("curate -q --out out", bad),
        "mix": lambda w, bad, a: _cli("mix --quiet --out out", _mix_yaml(w, bad)),
        "tokenizer-train": lambda w, bad, a: _cli("tokenizer train -q --vocab-size 300 --out out --corpus", f"legal={bad}"),
        "vocab-report": lambda w, bad, a: _cli("vocab report -q --tokenizer gpt2 --out out --corpus", f"legal={bad}"),
        "eval-data": lambda w, bad, a: _cli("eval -q --device cpu --out out --model", a["model"], "--data", f"legal={bad}"),
    }  # fmt: skip

    def row(command: str) -> Row:
        def build(work: Path, a: dict[str, Path]) -> tuple[list[str], str]:
            return commands[command](
                work, make(work / name), a
            ), rf"{re.escape(name)}: {label} \((after|before) "

        return Row(f"{kind}-{command}", build)

    return [row(command) for command in commands]


def _gz_not_deflate(work, _):
    bad = _corrupt_gz(work / "c.jsonl.gz")
    return _cli("curate -q --out out", bad), r"c\.jsonl\.gz: truncated or corrupt .*gzip -t"


def _tokenizer_json_not_json(work, _):
    folder = work / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    mix = _mix_yaml(work, _jsonl(work / "c.jsonl", TEXTS), tokenizer=folder)
    return _cli("mix --quiet --out out", mix), r"tokenizer\.json"


def _yaml_not_utf8(work, _):
    corpus = _jsonl(work / "c.jsonl", TEXTS)
    text = f"# r\xe9sum\xe9 of the mix\nsources:\n  legal:\n    paths: [{corpus}]\n"
    (work / "mix.yaml").write_bytes(text.encode("latin-1"))
    return _cli("mix --quiet --out out mix.yaml"), r"mix\.yaml.*UTF-8"


def _yaml_duplicate_keys(work, _):
    corpus = _jsonl(work / "c.jsonl", TEXTS)
    source = f"  legal:\n    paths: [{corpus}]\n    ratio: 0.5\n"
    _mix_yaml(work, corpus, text=f"sources:\n{source}{source}seq_len: 16\ntokenizer: gpt2\n")
    return _cli("mix --quiet --out out mix.yaml"), r"mix\.yaml.*(legal.*duplicate|duplicate.*legal)"


def _out_under_file(work, _):
    (work / "notes.txt").write_text("mine\n")
    argv = _cli("curate -q --out notes.txt/out", _jsonl(work / "c.jsonl", TEXTS))
    return argv, r"--out \S*notes\.txt/out: .*file"


def _out_read_only(work, _):
    corpus = _jsonl(work / "c.jsonl", TEXTS)
    (work / "locked").mkdir()
    (work / "locked").chmod(0o555)
    argv = _cli("tokenizer train -q --vocab-size 300 --out locked/tok --corpus", f"legal={corpus}")
    return argv, r"--out \S*locked/tok: .*not writable"


def _curate_out_dot(work, _):
    argv = _cli("curate -q --overwrite --out .", _jsonl(work / "c.jsonl", TEXTS))
    return argv, r"--out .*current directory"


def _tokenizer_out_dot(work, _):
    corpus = _jsonl(work / "c.jsonl", TEXTS)
    argv = _cli("tokenizer train -q --overwrite --vocab-size 300 --out . --corpus", f"legal={corpus}")
    return argv, r"--out .*current directory"


def _generate_too_long(_work, a):
    argv = _cli(
        "generate --device cpu --max-new-tokens 30 --model", a["model"], "--prompt", " ".join(TEXTS[:2])
    )
    return argv, rf"--prompt #1 \(\d+ tokens\) \+ --max-new-tokens 30 = \d+ tokens: .*{CONTEXT}-token context"


def _plan_params_1e30(_work, _):
    return _cli("plan --params 1e30"), r"--params 1e\+30: .*beyond any known hardware.*at most"


def _plan_contradiction(_work, _):
    argv = _cli("plan --flops 1e25 --params 1B --tokens 1T")
    return argv, r"--flops 1e\+25, --params 1e\+09 and --tokens 1e\+12 disagree: .*6ND = 6e\+21"


def _plan_missing_catalog(work, _):
    return _cli("plan --params 7B --gpu-catalog gpus.yaml"), r"--gpu-catalog \S*gpus\.yaml: no such file"


def _pretrain_zero_gpus(work, a):
    return _cli("pretrain --num-gpus 0 --dry-run --out run --recipe", _recipe(work, a)), r"--num-gpus 0"


def _pretrain_tokenizer_bigger_than_mix(work, a):
    recipe = _recipe(work, a, tokenizer=str(a["big_tokenizer"]))
    return _cli("pretrain --dry-run --out run --recipe", recipe), r"(?=.*vocab)(?=.*\b512\b)(?=.*\b384\b)"


def _eval_max_length(work, a):
    corpus = _jsonl(work / "c.jsonl", TEXTS)
    argv = _cli(
        "eval -q --device cpu --max-length 64 --out out --model", a["model"], "--data", f"legal={corpus}"
    )
    return argv, rf"--max-length 64: model .*a {CONTEXT}-token context; use --max-length {CONTEXT} or less"


def _vocab_size_far_above(work, _):
    corpus = _jsonl(work / "c.jsonl", TEXTS)
    argv = _cli("tokenizer train -q --vocab-size 50000 --out out --corpus", f"legal={corpus}")
    return argv, r"--vocab-size 50000: the bpe trainer found only \d+ tokens in the corpora legal"


ROWS: list[Row] = [
    *_corpus_commands("gz", _truncated_gz, "c.jsonl.gz", "truncated or corrupt compressed file"),
    Row("gz-not-deflate", _gz_not_deflate),
    *_corpus_commands("parquet", _corrupt_parquet, "c.parquet", "corrupt or not a Parquet file"),
    Row("tokenizer-json-not-json", _tokenizer_json_not_json),
    Row("yaml-not-utf8", _yaml_not_utf8),
    Row("out-under-a-file", _out_under_file),
    Row("out-read-only", _out_read_only),
    Row("curate-out-dot", _curate_out_dot),
    Row("tokenizer-train-out-dot", _tokenizer_out_dot),
    Row("generate-past-context", _generate_too_long),
    Row("yaml-duplicate-keys", _yaml_duplicate_keys),
    Row("plan-params-1e30", _plan_params_1e30),
    Row("plan-flops-params-tokens-disagree", _plan_contradiction),
    Row("plan-gpu-catalog-missing", _plan_missing_catalog),
    Row("pretrain-num-gpus-0", _pretrain_zero_gpus),
    Row("pretrain-tokenizer-bigger-than-mix", _pretrain_tokenizer_bigger_than_mix),
    Row("eval-max-length-past-context", _eval_max_length),
    Row("tokenizer-vocab-size-far-above-corpus", _vocab_size_far_above),
]


# ------------------------------------------------------------------------------------- helpers


def _snapshot(folder: Path) -> dict[str, str]:
    """Every path under `folder` with its content hash (directories as 'dir')."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        found[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """The current directory of the command; HOME is elsewhere in tmp (caches never land in `work`)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _deny_writes_under(folder: Path, monkeypatch) -> None:
    """root ignores a directory's mode bits: make os.access answer as it would for anyone else."""
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        inside = Path(path).resolve() == folder or folder in Path(path).resolve().parents
        return False if inside and mode & os.W_OK else real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def _run_main(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """`domainlm ARGV` through the real entry point, in process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["domainlm", *argv])
    monkeypatch.setitem(cli._state, "debug", False)
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_one_error_line_and_writes_nothing(row, work, assets, monkeypatch, capsys):
    argv, pattern = row.build(work, assets)
    if row.id == "out-read-only" and os.geteuid() == 0:
        _deny_writes_under(work / "locked", monkeypatch)
    before = _snapshot(work)
    code, err = _run_main(argv, monkeypatch, capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and "Aborted" not in err, err
    assert code == 2, err
    assert len(errors) == 1, err
    assert errors[0].startswith("error: ") and errors[0].count("error:") == 1
    assert_matches(pattern, errors[0])
    assert _snapshot(work) == before, f"{row.id}: the command wrote or changed files"


def assert_matches(pattern: str, line: str) -> None:
    assert re.search(pattern, line), f"{pattern!r} not in {line!r}"


def test_bad_input_in_a_real_process(work, tmp_path):
    """One row end to end as a user runs it: exit 2, one `error:` line, no traceback, nothing written."""
    bad = _truncated_gz(work / "legal.jsonl.gz")
    before = _snapshot(work)
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-m", "domainlm", "curate", str(bad), "--out", str(work / "out"), "-q"],
        capture_output=True, text=True, timeout=120, cwd=work, env=env,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Aborted" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert_matches(r"legal\.jsonl\.gz: truncated or corrupt compressed file \(after line \d+: ", lines[0])
    assert _snapshot(work) == before


def test_unigram_trains_on_one_multi_megabyte_line(work, monkeypatch, capsys):
    """A corpus that is one ~2.5 MB line (no newline, 100 KB of it without a space): SentencePiece
    gets it in bounded pieces, so training takes seconds, and the tokenizer covers the text."""
    import random

    import domainlm.tokenizer.unigram as unigram

    rng = random.Random(0)
    syllables = ["ka", "to", "ri", "men", "sul", "dor", "pha", "que", "lis", "ber", "on", "tra"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    text = " ".join(rng.choice(words) for _ in range(300_000))
    text += " " + "".join(rng.choice(syllables) for _ in range(40_000))  # 100 KB without a space
    (work / "one_line.txt").write_text(text, encoding="utf-8")
    assert len(text) > 2_000_000 and "\n" not in text

    longest = []
    real_split = unigram.split_long_text

    def spy(piece, limit=unigram.MAX_SENTENCE_CHARS):
        pieces = list(real_split(piece, limit))
        longest.append(max(len(p) for p in pieces))
        return iter(pieces)

    monkeypatch.setattr(unigram, "split_long_text", spy)
    started = time.perf_counter()
    code, err = _run_main(
        ["tokenizer", "train", "--model", "unigram", "--corpus", f"one={work / 'one_line.txt'}",
         "--vocab-size", "400", "--out", str(work / "tok"), "-q", "--json"],
        monkeypatch, capsys,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    assert code == 0, err
    assert longest == [unigram.MAX_SENTENCE_CHARS]  # one document, fed in pieces no longer than that
    assert seconds < 120, f"unigram training took {seconds:.0f}s"
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(work / "tok" / "tokenizer.json"))
    sample = text[:2000]
    assert tok.decode(tok.encode(sample).ids) == sample
    assert tok.get_vocab_size() == 400


@pytest.mark.parametrize(
    ("text", "limit", "pieces"),
    [
        ("aaa bbb ccc", 7, ["aaa bbb", "ccc"]),  # cut at the last space in reach, the space dropped
        ("aaaaaaaaaa", 4, ["aaaa", "aaaa", "aa"]),  # no space: the run is cut
        ("short", 8, ["short"]),
        ("", 8, [""]),
    ],
)
def test_split_long_text(text, limit, pieces):
    from domainlm.tokenizer.unigram import split_long_text

    assert list(split_long_text(text, limit)) == pieces
    assert all(len(p) <= limit for p in pieces)
