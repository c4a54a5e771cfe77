"""A local causal or seq2seq model + prompts -> sampled or greedy continuations (transformers' generate).

Decoding: greedy (argmax) with `greedy=True` or `temperature=0`; otherwise sampling from the
softmax at `temperature`, restricted to the `top_k` most likely tokens (0: no limit) and then to
the smallest set whose probability reaches `top_p` (1: no limit). Each prompt is seeded with
`seed + prompt index`, so a prompt's samples do not depend on the other prompts.
Causal prompts start after the tokenizer's BOS (else EOS) token, as documents do in training
mixes, so an empty prompt samples a document from scratch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainlm.errors import ConfigError
from domainlm.eval.models import (
    DEVICES,
    DTYPES,
    inspect_model,
    load_weights,
    parse_model_specs,
    resolve_device,
    resolve_dtype,
)


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; every error message names the CLI flag."""

    max_new_tokens: int = 64
    greedy: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    num_samples: int = 1
    device: str = "auto"
    dtype: str = "auto"

    @property
    def do_sample(self) -> bool:
        return not self.greedy and self.temperature > 0

    def validate(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"--max-new-tokens {self.max_new_tokens}: must be at least 1")
        if math.isnan(self.temperature) or self.temperature < 0:
            problems.append(
                f"--temperature {self.temperature}: must be >= 0 (0 means greedy; 0.7-1.0 is usual)"
            )
        if self.top_k < 0:
            problems.append(f"--top-k {self.top_k}: must be >= 0 (0 turns it off)")
        if not 0 < self.top_p <= 1:
            problems.append(f"--top-p {self.top_p}: must be in (0, 1]; e.g. 0.9, or 1 to turn it off")
        if self.num_samples < 1:
            problems.append(f"--num-samples {self.num_samples}: must be at least 1")
        if self.seed < 0:
            problems.append(f"--seed {self.seed}: must be >= 0")
        if self.device not in DEVICES:
            problems.append(f"--device {self.device!r}: choose one of {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            problems.append(f"--dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.greedy and (self.temperature != 1.0 or self.top_k != 0 or self.top_p != 1.0):
            problems.append("--greedy ignores --temperature, --top-k and --top-p; drop either side")
        if not self.do_sample and self.num_samples > 1:
            problems.append(
                f"--num-samples {self.num_samples}: greedy decoding gives identical samples; sample "
                "(temperature > 0, no --greedy) or ask for 1"
            )
        if problems:
            raise ConfigError("; ".join(problems))

    def generation_config(self, tokenizer: Any) -> Any:
        """A complete GenerationConfig, so a model's own generation_config.json cannot change the decoding."""
        from transformers import GenerationConfig

        sampling = (
            {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}
            if self.do_sample
            else {}
        )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=self.do_sample,
            num_return_sequences=self.num_samples,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )


@dataclass(frozen=True)
class Sample:
    """One continuation: its prompt, the new text (prompt excluded) and its token ids."""

    prompt: str
    sample: int
    text: str
    token_ids: list[int]
    stopped_at_eos: bool


def _prompt_ids(info: Any, prompt: str) -> list[int]:
    from domainlm.eval.perplexity import prefix_token_id

    tokenizer = info.tokenizer
    if info.kind == "seq2seq":
        return tokenizer(prompt)["input_ids"]  # the encoder input, with the tokenizer's own EOS
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    prefix = prefix_token_id(tokenizer)
    if prefix is None and not ids:
        raise ConfigError(
            "--prompt '': an empty prompt needs a tokenizer with a BOS or EOS token; give some text"
        )
    return ([prefix] if prefix is not None else []) + ids


class Generator:
    """A loaded model ready to continue prompts; build it once, call `generate` many times."""

    def __init__(self, model: str | Path, settings: GenerationSettings) -> None:
        settings.validate()
        spec = parse_model_specs([str(model)])[0]
        self.info = inspect_model(spec)
        if self.info.kind == "masked":
            raise ConfigError(
                f"--model {model}: a masked LM predicts hidden tokens and cannot generate text; "
                "use a causal or seq2seq model"
            )
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.model = load_weights(self.info, self.device, resolve_dtype(settings.dtype, self.device))

    def generate(self, prompts: list[str], settings: GenerationSettings | None = None) -> list[Sample]:
        """Continue each prompt; `settings` overrides the decoding (not the device) for this call."""
        import torch

        settings = settings or self.settings
        settings.validate()
        config = settings.generation_config(self.info.tokenizer)
        prompt_ids = [_prompt_ids(self.info, prompt) for prompt in prompts]
        for index, ids in enumerate(prompt_ids):  # every prompt is checked before any is generated
            self._check_fits(index, len(ids), settings.max_new_tokens)
        samples = []
        for index, prompt in enumerate(prompts):
            ids = torch.tensor([prompt_ids[index]], device=self.device)
            torch.manual_seed(settings.seed + index)  # seeds CPU and every CUDA device
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config
                )
            new = output if self.info.kind == "seq2seq" else output[:, ids.shape[1] :]
            for number, row in enumerate(new.tolist()):
                samples.append(self._sample(prompt, number, row))
        return samples

    def _check_fits(self, index: int, num_prompt: int, max_new_tokens: int) -> None:
        """A causal model sees prompt + new tokens at once; past its context the position table
        ends (an IndexError deep in torch) or, with rotary positions, the output silently degrades.
        A seq2seq model reads the prompt in its encoder and writes the new tokens in its decoder."""
        context = self.info.context_length
        where = f"--prompt #{index + 1} ({num_prompt} tokens)"
        if self.info.kind == "seq2seq":
            if num_prompt > context or max_new_tokens > context:
                raise ConfigError(
                    f"{where} or --max-new-tokens {max_new_tokens}: model {self.info.spec.path} reads and "
                    f"writes at most {context} tokens; shorten the prompt or lower --max-new-tokens"
                )
            return
        if num_prompt + max_new_tokens > context:
            room = context - num_prompt
            fix = (
                f"use --max-new-tokens {room} or less, or shorten the prompt"
                if room >= 1
                else f"shorten the prompt to at most {context - 1} tokens"
            )
            raise ConfigError(
                f"{where} + --max-new-tokens {max_new_tokens} = {num_prompt + max_new_tokens} tokens: "
                f"model {self.info.spec.path} has a {context}-token context; {fix}"
            )

    def _sample(self, prompt: str, number: int, row: list[int]) -> Sample:
        tokenizer = self.info.tokenizer
        if self.info.kind == "seq2seq" and row and row[0] == self.info.config.decoder_start_token_id:
            row = row[1:]  # the decoder start token is not generated text
        eos = tokenizer.eos_token_id
        stopped = eos in row
        if stopped:  # what follows the first EOS is padding of a batch of samples
            row = row[: row.index(eos) + 1]
        text = tokenizer.decode(row, skip_special_tokens=True)
        return Sample(prompt=prompt, sample=number, text=text, token_ids=row, stopped_at_eos=stopped)


def generate(
    model: str | Path, prompts: list[str], settings: GenerationSettings | None = None
) -> list[Sample]:
    """Load `model` and continue every prompt `settings.num_samples` times."""
    return Generator(model, settings or GenerationSettings()).generate(prompts)
