"""Model families -> the kind of language model each is, the objective that trains it, its Auto class.

One table for pretraining (which transformers Auto class builds a `model.arch`, which objective
trains it) and eval (which Auto class loads a model directory of a given kind). Below every stage;
transformers is imported only when a class is asked for. The planner's parameter-counting rules
(`domainlm.plan.shapes.ARCHES`: llama, gpt2, neox, bloom) are a different list: decoder layouts.
"""

from __future__ import annotations

from typing import Literal

ModelKind = Literal["causal", "masked", "seq2seq"]

KIND_OF_ARCH: dict[str, ModelKind] = {
    "llama": "causal",
    "bert": "masked",
    "roberta": "masked",
    "t5": "seq2seq",
}
OBJECTIVE_OF_KIND: dict[ModelKind, str] = {"causal": "causal", "masked": "mlm", "seq2seq": "span_corruption"}
_AUTO_CLASS: dict[ModelKind, str] = {
    "causal": "AutoModelForCausalLM",
    "masked": "AutoModelForMaskedLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
}


def auto_class(kind: ModelKind) -> type:
    """The transformers Auto class for a kind of model (deferred import: transformers costs seconds)."""
    import transformers

    return getattr(transformers, _AUTO_CLASS[kind])
