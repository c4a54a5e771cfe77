"""Compute planning: budget / size / tokens / data -> model shape, FLOPs, time, memory per GPU."""
