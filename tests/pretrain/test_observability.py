"""Per-source training metrics, skipped steps and peak memory in the log line, TensorBoard tags."""

from __future__ import annotations

import numpy as np
import pytest

from domainlm.mix.manifest import SourceIds, open_mix
from domainlm.pretrain.engine import peak_memory_bytes
from domainlm.pretrain.metrics import SourceTracker, format_train_line
from domainlm.pretrain.trackers import scalar_tags


def test_tokens_per_source_count_every_consumed_sequence_across_epochs_and_resume(tiny_data):
    manifest = open_mix(tiny_data[1])
    ids = SourceIds(manifest)
    names = [s.name for s in manifest.sources]
    total = len(ids)
    brute = np.bincount(ids[np.arange(2 * total + 5) % total], minlength=2)  # two epochs and a bit
    straight = SourceTracker(names, [0.5, 0.5], ids, 64, consumed=0)
    for consumed in (8, 16, total + 3, 2 * total + 5):
        straight.advance(consumed)
    resumed = SourceTracker(names, [0.5, 0.5], ids, 64, consumed=total + 3)
    resumed.advance(2 * total + 5)
    for tracker in (straight, resumed):
        assert tracker.sequences.tolist() == brute.tolist()
    record = straight.record(nats=[30.0, 0.0], tokens=[10.0, 0.0])
    assert record["legal"] == {
        "loss": 3.0,
        "tokens": int(brute[0]) * 64,
        "share": brute[0] / brute.sum(),
        "target": 0.5,
    }
    assert record["general"]["loss"] is None  # no general token in this interval
    assert record["legal"]["share"] + record["general"]["share"] == pytest.approx(1.0)


def _record(**extra):
    return {
        "step": 20,
        "max_steps": 100,
        "loss": 2.5,
        "lr": 3e-4,
        "grad_norm": 0.5,
        "tokens_per_s_per_gpu": 1000.0,
        "tflops_per_gpu": 1.0,
        "mfu": None,
        "eta_s": 60.0,
        **extra,
    }


def test_log_line_names_memory_sources_and_skipped_steps():
    sources = {
        "legal": {"loss": 2.4, "tokens": 640, "share": 0.512, "target": 0.51},
        "general": {"loss": None, "tokens": 610, "share": 0.488, "target": 0.49},
    }
    line = format_train_line(
        _record(peak_memory_gib=61.25, sources=sources, skipped_steps=2, skipped_steps_total=5)
    )
    assert line.endswith(
        "| mem 61.2 GiB | eta 1m00s | legal 2.400 51.2%/51% | general n/a 48.8%/49% | skipped 2 (5 in all)"
    )
    quiet = format_train_line(_record(skipped_steps=0, skipped_steps_total=3))
    assert "skipped" not in quiet and "mem" not in quiet


def test_tensorboard_tags_flatten_sources():
    record = {"kind": "train", "step": 3, "loss": 2.0, "sources": {"legal": {"loss": 1.5, "share": 0.5}}}
    assert scalar_tags(record, "train") == [
        ("train/loss", 2.0),
        ("train/sources/legal/loss", 1.5),
        ("train/sources/legal/share", 0.5),
    ]


def test_peak_memory_is_reported_and_reset():
    blob = np.ones(64 * 2**20 // 8)  # 64 MiB resident
    first = peak_memory_bytes()
    assert first >= blob.nbytes
    assert peak_memory_bytes(reset=False) <= first + blob.nbytes
