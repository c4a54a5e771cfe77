"""fsspec URLs (s3://, gs://, file://, memory://) for corpora, caches and outputs: the one owner of URLs.

Everything else in domainlm works on local paths; a value is a URL when it starts with `scheme://`
(`is_url`), and only this package turns one into a filesystem. Credentials and endpoints come from
where the storage library looks (for S3: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and
~/.aws, AWS_ENDPOINT_URL) plus the `--storage-option key=value` pairs of curate, mix and tokenizer
train (`set_storage_options`), which override them. Parts:
- `paths`: RemotePath, the few pathlib methods the corpus readers use, over any fsspec filesystem;
- `output`: a remote output directory written crash-safely (temp prefix, the marker first, the
  manifest last) under the marker rules of domainlm.outputs;
- `stage`: a remote directory copied to local disk with a progress bar (pretrain's mix).
Failures of the store itself (unreachable endpoint, no such bucket, no credentials, access denied)
become one-line ResourceErrors here (`storage_errors`), so every caller reports them the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from domainlm.errors import ConfigError, ResourceError

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")  # 2+ letters: `C:\data` is not a URL
_LOCAL_PROTOCOLS = ("file", "local")
BUCKET_PROTOCOLS = ("s3", "s3a", "gs", "gcs")  # the first path part is a bucket that must exist
# botocore's legacy mode retries a refused connection 4 times with backoff (~11 s) and waits 60 s
# per connect: a wrong endpoint should fail in seconds. Standard mode with 3 attempts (AWS's own
# default count) still retries throttling and transient errors of a reachable store. Override with
# --storage-option config_kwargs.connect_timeout=60 etc.
_S3_DEFAULTS: dict[str, Any] = {
    "config_kwargs": {"connect_timeout": 10, "retries": {"max_attempts": 3, "mode": "standard"}}
}
_options: dict[str, Any] = {}


def is_url(value: object) -> bool:
    """True for `scheme://...` strings (s3://bucket/key, memory://x, file:///tmp/x)."""
    return isinstance(value, str) and bool(_URL_RE.match(value))


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0].lower()


def local_path_of(url: str) -> Path | None:
    """The local path of a file:// URL (written with the local, atomic-rename code), else None."""
    if protocol_of(url) not in _LOCAL_PROTOCOLS:
        return None
    return Path(url.split("://", 1)[1] or "/")


def output_target(value: str | Path) -> Path | str:
    """An --out value: a remote URL stays a str (written through storage.output), a file:// URL
    or a path becomes a local Path (written with the atomic rename of domainlm.outputs)."""
    text = str(value) if isinstance(value, str) else None
    if text is None or not is_url(text):
        return Path(value)
    return local_path_of(text) or text


def parse_storage_options(items: list[str] | None) -> dict[str, Any]:
    """`--storage-option key=value` pairs -> fsspec keyword arguments (values read as YAML scalars:
    `anon=true` is a bool, `endpoint_url=http://...` a string; `a.b=v` nests: client_kwargs.region_name)."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--storage-option {item!r}: expected key=value, e.g. --storage-option endpoint_url=http://host:9000"
            )
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        target = options
        *parents, leaf = key.strip().split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = raw if isinstance(value, dict | list) or value is None else value
    return options


def set_storage_options(options: dict[str, Any]) -> None:
    """Options for every filesystem this process opens from now on (the CLI's --storage-option)."""
    _options.clear()
    _options.update(options)
    _cached_filesystems.clear()


def storage_options() -> dict[str, Any]:
    """The options set by set_storage_options (a Ray executor passes them on to its workers)."""
    return dict(_options)


_cached_filesystems: dict[tuple[str, str], Any] = {}


def _merged(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for `url`, built once per protocol and options."""
    import fsspec

    protocol = protocol_of(url)
    options = _merged(_S3_DEFAULTS, _options) if protocol in ("s3", "s3a") else dict(_options)
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        raise ConfigError(
            f"{url}: no filesystem for {protocol}:// ({exc}); install its fsspec package "
            "(s3fs for s3://, gcsfs for gs://) or use a local path"
        ) from None
    # Keyed on the credentials' environment too (fsspec's own instance cache is not): a test or a
    # long-lived process that changes AWS_* gets a filesystem that sees the change.
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(("AWS_", "GOOGLE_", "FSSPEC_")))
    key = (protocol, repr(sorted(options.items())), repr(env))
    fs = _cached_filesystems.get(key)
    if fs is None:
        for name in ("botocore", "aiobotocore", "s3fs"):  # "Found credentials in ..." at INFO: noise
            logging.getLogger(name).setLevel(logging.WARNING)
        with storage_errors(url):
            fs = cls(**options, skip_instance_cache=True)
        _cached_filesystems[key] = fs
    return fs, cls._strip_protocol(url)


def _is_error(exc: BaseException, names: tuple[str, ...]) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _endpoint(fs: Any) -> str:
    client = getattr(fs, "s3", None)
    endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None)
    return endpoint or "the default endpoint"


def _bucket(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


def translate(url: str, exc: BaseException, fs: Any = None) -> ResourceError | None:
    """A one-line ResourceError for a failure of the store (not of the data), or None."""
    protocol = protocol_of(url)
    if _is_error(exc, ("NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError")):
        return ResourceError(
            f"{url}: no credentials found for {protocol}://; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or pass --storage-option key=... "
            "--storage-option secret=... (anon=true for a public bucket)"
        )
    if _is_error(exc, ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError")):
        where = _endpoint(fs) if fs is not None else "its endpoint"
        return ResourceError(
            f"{url}: cannot reach the storage endpoint {where} ({' '.join(str(exc).split())}); check "
            "that the server is up and AWS_ENDPOINT_URL or --storage-option endpoint_url=URL"
        )
    if isinstance(exc, PermissionError):
        return ResourceError(
            f"{url}: access denied ({' '.join(str(exc).split())}); check the credentials "
            "(AWS_ACCESS_KEY_ID / AWS_PROFILE) and that they may read and write this bucket"
        )
    if isinstance(exc, FileNotFoundError) and "bucket does not exist" in str(exc).lower():
        return _no_bucket(url)
    return None


def _no_bucket(url: str) -> ResourceError:
    return ResourceError(
        f"{url}: bucket {_bucket(url)!r} does not exist; create it first or fix the URL "
        "(and check the endpoint: AWS_ENDPOINT_URL or --storage-option endpoint_url=URL)"
    )


@contextlib.contextmanager
def storage_errors(url: str, fs: Any = None) -> Iterator[None]:
    """Re-raise failures of the store as one-line ResourceErrors naming `url` and the fix."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - what is not the store's failure is re-raised as it is
        if isinstance(exc, ConfigError | ResourceError):
            raise
        error = translate(url, exc, fs)
        if error is None:
            raise
        raise error from None


def check_reachable(url: str) -> None:
    """Fail now, in one line, when the store behind `url` cannot be used: the endpoint does not
    answer, there are no credentials, or (s3://, gs://) the bucket does not exist. One request."""
    fs, path = filesystem(url)
    if protocol_of(url) in BUCKET_PROTOCOLS:
        with storage_errors(url, fs):
            try:
                fs.info(_bucket(url))
            except FileNotFoundError:
                raise _no_bucket(url) from None
    else:
        with storage_errors(url, fs):
            fs.exists(path)
