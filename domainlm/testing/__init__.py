"""Helpers for tests that run real multi-process training on CPU."""
