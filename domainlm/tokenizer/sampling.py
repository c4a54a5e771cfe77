"""Training corpora + ratios + seed -> the exact stream of texts a tokenizer is trained on.

Ratios are shares of UTF-8 bytes of training text. Without `max_train_bytes` the mix is the largest
one that repeats nothing: total = min(available_i / ratio_i). With `max_train_bytes`, each corpus
gets ratio_i * max_train_bytes, repeating a thin corpus whole (counted as `repeats`) when needed.
Documents are picked in a seeded random order and the last one is cut so each corpus gets its byte
budget exactly; the texts then stream in file order, so memory stays one int per document.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from domainlm.corpus import CorpusReader
from domainlm.corpus.fingerprint import corpus_fingerprint
from domainlm.tokenizer.config import CorpusSpec, TrainConfig

log = logging.getLogger(__name__)


@dataclass
class CorpusPlan:
    """How many bytes of one corpus go into training, and which documents carry them."""

    spec: CorpusSpec
    reader: CorpusReader
    available_bytes: int = 0
    available_documents: int = 0
    target_bytes: int | None = None  # None: every document once (no sampling)
    copies: list[int] = field(default_factory=list)  # per document: how many times it is used
    cut_index: int = -1  # the document used only in part (its prefix fills the budget)
    cut_bytes: int = 0
    used_bytes: int = 0
    used_documents: int = 0

    def summary(self) -> dict:
        """The manifest entry for this corpus (no paths of temp files, no timings)."""
        sampled = self.target_bytes is not None
        return {
            "name": self.spec.name,
            "paths": list(self.spec.paths),
            "files": [str(p) for p in self.reader.files],
            "fingerprint": corpus_fingerprint(self.reader.files),
            "documents": self.available_documents,
            "bytes": self.available_bytes,
            "target_ratio": self.spec.ratio,
            "used_bytes": self.used_bytes,
            "used_documents": self.used_documents,
            "repeats": round(self.used_bytes / self.available_bytes, 4) if self.available_bytes else 0.0,
            "sampled": sampled,
            "read_stats": self.reader.stats.as_dict(),
        }


def open_corpora(config: TrainConfig) -> list[CorpusPlan]:
    """Resolve every corpus's files now, so a missing one fails before any work starts."""
    return [CorpusPlan(spec, CorpusReader(spec.paths, spec.name, spec.text_field)) for spec in config.corpora]


def _needs_sampling(config: TrainConfig) -> bool:
    return config.max_train_bytes is not None or any(c.ratio is not None for c in config.corpora)


def plan_sampling(plans: list[CorpusPlan], config: TrainConfig) -> None:
    """Measure each corpus (one pass) and pick documents so the byte shares match the ratios."""
    if not _needs_sampling(config):
        return
    lengths = {}
    for plan in plans:
        lengths[plan.spec.name] = [len(doc.text.encode("utf-8")) for doc in plan.reader]
        plan.available_bytes = sum(lengths[plan.spec.name])
        plan.available_documents = len(lengths[plan.spec.name])
    ratios = _ratios(plans)
    if config.max_train_bytes is not None:
        total = config.max_train_bytes
    else:
        total = min(p.available_bytes / ratios[p.spec.name] for p in plans if ratios[p.spec.name] > 0)
    for plan in plans:
        target = int(round(ratios[plan.spec.name] * total))
        _select_documents(plan, lengths[plan.spec.name], target, config.seed)


def _ratios(plans: list[CorpusPlan]) -> dict[str, float]:
    if all(p.spec.ratio is not None for p in plans):
        return {p.spec.name: float(p.spec.ratio) for p in plans}
    grand = sum(p.available_bytes for p in plans) or 1
    return {p.spec.name: p.available_bytes / grand for p in plans}  # natural proportions


def _select_documents(plan: CorpusPlan, lengths: list[int], target: int, seed: int) -> None:
    """Whole passes while the budget exceeds the corpus, then a seeded random subset, the last cut."""
    plan.target_bytes = target
    available = sum(lengths)
    passes, remainder = divmod(target, available) if available else (0, 0)
    plan.copies = [passes] * len(lengths)
    order = list(range(len(lengths)))
    random.Random(f"{seed}:{plan.spec.name}").shuffle(order)
    for index in order:
        if remainder <= 0:
            break
        if lengths[index] <= remainder:
            plan.copies[index] += 1
            remainder -= lengths[index]
        else:
            plan.cut_index, plan.cut_bytes, remainder = index, remainder, 0
    if target > available:
        log.info(
            "corpus %s: %d byte budget repeats it %.2f times", plan.spec.name, target, target / available
        )


def _cut(text: str, num_bytes: int) -> str:
    """The longest prefix of `text` with at most `num_bytes` UTF-8 bytes (never half a character)."""
    return text.encode("utf-8")[:num_bytes].decode("utf-8", errors="ignore")


def iter_training_texts(plans: list[CorpusPlan], on_text: Callable[[], None] | None = None) -> Iterator[str]:
    """Every training text in corpus order then file order; `on_text()` per text feeds a progress bar."""
    for plan in plans:
        if plan.target_bytes is None:
            yield from _every_document(plan, on_text)
            continue
        plan.used_bytes = plan.used_documents = 0
        for index, doc in enumerate(plan.reader):
            texts = [doc.text] * plan.copies[index]
            if index == plan.cut_index:
                texts.append(_cut(doc.text, plan.cut_bytes))
            for text in texts:
                plan.used_bytes += len(text.encode("utf-8"))
                plan.used_documents += 1
                if on_text is not None:
                    on_text()
                yield text


def _every_document(plan: CorpusPlan, on_text: Callable[[], None] | None) -> Iterator[str]:
    """No sampling: the reader's own counts are the usage (no second UTF-8 encode per document)."""
    for doc in plan.reader:
        if on_text is not None:
            on_text()
        yield doc.text
    plan.available_bytes = plan.used_bytes = plan.reader.stats.num_bytes
    plan.available_documents = plan.used_documents = plan.reader.stats.num_documents
