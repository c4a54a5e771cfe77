"""T5 span corruption's length arithmetic and noise masks (pure functions of their arguments).

`objectives.SpanCorruption` draws its masks with these; `compute_input_and_target_lengths` chooses a
mix's seq_len for a wanted encoder length (both re-exported by domainlm.pretrain.objectives).
"""

from __future__ import annotations

import torch
from torch import Tensor


def noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a `length`-token sequence, exactly as T5's random_spans_noise_mask."""
    # Python's round is half-to-even, like tf.math.round in the T5 reference.
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_spans = max(round(num_noise / mean_noise_span_length), 1)
    return num_noise, num_spans


def span_corruption_lengths(
    tokens_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
    """(encoder input length, target length) after corrupting `tokens_length` raw tokens (+EOS each)."""
    num_noise, num_spans = noise_counts(tokens_length, noise_density, mean_noise_span_length)
    return tokens_length - num_noise + num_spans + 1, num_noise + num_spans + 1


def compute_input_and_target_lengths(
    inputs_length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
    """T5's helper: the raw length to pack so the encoder input has `inputs_length` tokens, and the
    target length (e.g. 512 -> (568, 114)). Use it to choose the mix's seq_len for span corruption."""
    tokens_length = inputs_length
    while (
        span_corruption_lengths(tokens_length + 1, noise_density, mean_noise_span_length)[0] <= inputs_length
    ):
        tokens_length += 1
    _, targets_length = span_corruption_lengths(tokens_length, noise_density, mean_noise_span_length)
    return tokens_length, targets_length


def _random_segmentation(
    num_items: int, num_segments: int, size: int, generator: torch.Generator, device: torch.device
) -> Tensor:
    """[size, num_segments] positive lengths summing to num_items, uniform over compositions (T5)."""
    # Choose num_segments - 1 distinct cut points among the num_items - 1 gaps.
    scores = torch.rand((size, num_items - 1), generator=generator, device=device)
    cuts = scores.argsort(dim=1)[:, : num_segments - 1].sort(dim=1).values + 1
    edges = torch.cat(
        [cuts.new_zeros((size, 1)), cuts, cuts.new_full((size, 1), num_items)],
        dim=1,
    )
    return edges.diff(dim=1)


def random_spans_noise_mask(
    size: int,
    length: int,
    generator: torch.Generator,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Boolean [size, length] noise masks: alternating non-noise/noise spans, starting with non-noise."""
    num_noise, num_spans = noise_counts(length, noise_density, mean_noise_span_length)
    device = torch.device(device)
    noise_lengths = _random_segmentation(num_noise, num_spans, size, generator, device)
    keep_lengths = _random_segmentation(length - num_noise, num_spans, size, generator, device)
    interleaved = torch.stack([keep_lengths, noise_lengths], dim=2).reshape(size, 2 * num_spans)
    starts = interleaved.cumsum(dim=1)[:, :-1]
    indicator = torch.zeros((size, length), dtype=torch.long, device=device)
    indicator.scatter_(1, starts, 1)
    return indicator.cumsum(dim=1) % 2 == 1


def compact_rows(values: Tensor, keep: Tensor, width: int) -> Tensor:
    """values[keep] row by row, where every row keeps exactly `width` items (no host sync)."""
    # Kept items go to their rank among kept items; dropped ones to a spare last column.
    destination = torch.where(keep, keep.cumsum(dim=1) - 1, width)
    out = values.new_zeros((values.shape[0], width + 1))
    out.scatter_(1, destination, values)
    return out[:, :width]
