"""Stage 2: corpora -> domain tokenizers (train, extend) and the vocabulary coverage report."""
