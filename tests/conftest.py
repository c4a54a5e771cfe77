"""Suite-wide fixtures: nothing a test runs writes into the real ~/.cache."""

import os

import pytest


def _torch_extensions_dir() -> str:
    """Where torch keeps JIT-built C++ ops (DeepSpeed's shm comm op) when no test has moved the cache.

    It follows XDG_CACHE_HOME, so without pinning it here every test session would rebuild the op in
    its private cache (1-2 CPU-minutes each). A build cache holds no user data, so sharing it is safe."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return os.environ["TORCH_EXTENSIONS_DIR"]
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache_home, "torch_extensions")


@pytest.fixture(scope="session", autouse=True)
def _private_cache_home(tmp_path_factory):
    """XDG_CACHE_HOME -> a session temp dir (the token cache of `mix` lives under it); subprocesses
    that tests start inherit it. Tests about the default location set it again themselves."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_EXTENSIONS_DIR", _torch_extensions_dir())
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))
        yield
