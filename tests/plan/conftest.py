import pytest

from domainlm.testing.mixes import source_entry, write_manifest


@pytest.fixture
def mix_dir(tmp_path):
    """A `domainlm mix` manifest with a 51/49 finance/general mix; no shards needed."""
    sources = [
        source_entry("finance", available_tokens=363_000_000_000, target_ratio=0.51),
        source_entry("general", available_tokens=345_000_000_000, target_ratio=0.49),
    ]
    return write_manifest(tmp_path / "mix", sources, dtype="uint32", vocab_size=131072, eos_token_id=0)
