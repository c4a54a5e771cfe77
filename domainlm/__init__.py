"""domainlm: domain-adaptive LLM pretraining, from raw corpora to a per-domain evaluation."""

__version__ = "0.1.0"
