"""Suite-wide fixtures: nothing a test runs writes into the real ~/.cache."""

import os
import sys

import pytest


def _torch_extensions_dir() -> str:
    """Where torch keeps JIT-built C++ ops (DeepSpeed's shm comm op) when no test has moved the cache.

    Torch puts them under the user cache dir, which follows XDG_CACHE_HOME, so without pinning it here
    every test session would rebuild the op in its private cache (1-2 CPU-minutes each). A build cache
    holds no user data, so sharing it is safe. Same folder torch picks itself (root/pyXY_<accelerator>),
    so a build made outside the tests is reused too."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return os.environ["TORCH_EXTENSIONS_DIR"]
    import torch
    from torch.utils.cpp_extension import get_default_build_root

    if torch.version.hip is not None:
        accelerator = "rocm" + torch.version.hip.replace(".", "")
    elif torch.version.cuda is not None:
        accelerator = "cu" + torch.version.cuda.replace(".", "")
    else:
        accelerator = "cpu"
    python = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    return os.path.join(get_default_build_root(), f"{python}_{accelerator}")


@pytest.fixture(scope="session", autouse=True)
def _private_cache_home(tmp_path_factory):
    """XDG_CACHE_HOME -> a session temp dir (the token cache of `mix` lives under it); subprocesses
    that tests start inherit it. Tests about the default location set it again themselves."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_EXTENSIONS_DIR", _torch_extensions_dir())
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))
        yield
