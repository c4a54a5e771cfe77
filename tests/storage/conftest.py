"""A real S3-compatible server for the storage tests: moto in server mode on 127.0.0.1.

Boto, s3fs and domainlm talk HTTP to it exactly as to AWS (signing, multipart, listing); nothing in
them is patched. One server per session (~0.1 s to start), stopped after; each test gets its own
bucket. Credentials are dummies and the endpoint is AWS_ENDPOINT_URL, set in this process only.
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
from pathlib import Path

import pytest

from domainlm.assets import sample_corpus

DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no 1-2 s probe of an instance-metadata service
}
_counter = itertools.count()


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    from moto.server import ThreadedMotoServer  # the dev extra: missing it is an install error

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch) -> str:
    """Dummy credentials and the local endpoint in os.environ for this test (no ~/.aws read)."""
    for key, value in DUMMY_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/domainlm-test-credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/domainlm-test-config")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    from domainlm.storage import set_storage_options

    set_storage_options({})
    yield s3_endpoint
    set_storage_options({})


@pytest.fixture
def bucket(s3_env) -> str:
    """A new empty bucket: its s3:// URL."""
    from domainlm.storage import filesystem

    name = f"domainlm-test-{next(_counter)}"
    fs, _ = filesystem(f"s3://{name}")
    fs.mkdir(name)
    return f"s3://{name}"


def upload(local: Path, url: str) -> None:
    """Copy a local file or folder to `url` (the test's setup, through s3fs like any client)."""
    from domainlm.storage import filesystem

    fs, path = filesystem(url)
    if local.is_dir():
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            fs.put_file(str(file), f"{path}/{file.relative_to(local).as_posix()}")
    else:
        fs.put_file(str(local), path)


def download(url: str, local: Path) -> Path:
    """Copy every object under `url/` to `local/` (to compare bytes with a local run)."""
    from domainlm.storage import filesystem

    fs, path = filesystem(url)
    for key in fs.find(path):
        target = local / key[len(path) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(key, str(target))
    return local


def shipped_texts(domain: str, num_docs: int, chars: int) -> list[str]:
    with gzip.open(sample_corpus(domain), "rt", encoding="utf-8") as handle:
        return [json.loads(line)["text"][:chars] for _, line in zip(range(num_docs), handle, strict=False)]


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """Two small sources (finance, general) with a duplicate document each: curate removes them."""
    folder = tmp_path_factory.mktemp("corpus")
    for name, domain, num in (("fin", "finance", 16), ("gen", "general", 24)):
        texts = shipped_texts(domain, num, 6000)
        texts.append(texts[1])  # an exact duplicate: the removal log has a line for it
        data = "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()
        (folder / f"{name}.jsonl.gz").write_bytes(gzip.compress(data, mtime=0))
    return folder
