"""Stage 5: recipes + mix shards -> DeepSpeed ZeRO pretraining runs, checkpoints and exported models."""
