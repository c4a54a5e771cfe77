"""Suite-wide fixtures: nothing a test runs writes into the real ~/.cache."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache_home(tmp_path_factory):
    """XDG_CACHE_HOME -> a session temp dir (the token cache of `mix` lives under it); subprocesses
    that tests start inherit it. Tests about the default location set it again themselves."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))
        yield
