"""Stage 6: models + per-domain held-out text -> loss, perplexity, bits per byte."""
