"""The on-disk layout of a mix directory (format `domainlm.mix/v1`), shared by writer and reader.

Kept free of torch so that `domainlm mix` starts fast; README "Mix output format" documents it.
"""

FORMAT = "domainlm.mix/v1"
MANIFEST_NAME = "manifest.json"
WORK_DIR = ".work"  # per-source token files while building; removed before the rename
DTYPES = ("uint16", "uint32")


def shard_path(index: int) -> str:
    return f"train/shard_{index:05d}.bin"


def source_ids_path(index: int) -> str:
    """One uint8 source index per sequence of shard `index` (no `.bin`: a `*.bin` glob stays tokens)."""
    return f"train/shard_{index:05d}.source_ids"


def work_token_path(source: str) -> str:
    return f"{WORK_DIR}/{source}.train.bin"


def val_token_path(source: str) -> str:
    return f"val/{source}.bin"


def val_text_path(source: str) -> str:
    return f"val/{source}.jsonl.gz"
