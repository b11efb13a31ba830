"""Batched generation for the generation-based evaluators (GSM8K exact match, data-to-text BLEU).

Prompts arrive as token ids (built exactly like the prompt part of a training sequence) and are
left-padded by the tokenizer's own `pad` (a copy padding on the left with the pad id, else the EOS id), so
every row's continuation starts right after its own last prompt token.
"""
from __future__ import annotations

import torch
from transformers import GenerationConfig, LogitsProcessorList, NoRepeatNGramLogitsProcessor

from ..bars import bar
from ..errors import ConfigError
from .causal_lm import padding_tokenizer


class NoRepeatInGenerated(NoRepeatNGramLogitsProcessor):
    """No n-gram twice within the generated text, as the PST/LoRA GPT-2 decoder bans it. transformers' own
    no_repeat_ngram_size also counts the prompt's n-grams, and most data-to-text references repeat a 4-gram of
    their input (92 % of E2E test references with GPT-2's tokens): that rule could never generate them."""

    def __init__(self, ngram_size: int, prompt_width: int):
        super().__init__(ngram_size)
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        return super().__call__(input_ids[:, self.prompt_width:], scores)


def settings(opts: dict) -> dict:
    """The generation settings recorded with the metrics (task options of the same names)."""
    out = {k: opts[k] for k in ("max_new_tokens", "num_beams", "length_penalty", "no_repeat_ngram_size",
                                "early_stopping", "eval_batch_size", "stop") if k in opts}
    for key in ("max_new_tokens", "num_beams", "eval_batch_size"):
        if key in out and (not isinstance(out[key], int) or out[key] < 1):
            raise ConfigError(f"task.options.{key}={out[key]!r} must be an integer >= 1")
    return out


def cut_at_stop(text: str, stop: list[str]) -> str:
    """The text before the earliest stop string (lm-eval's `until`)."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(cuts)] if cuts else text


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], gen: dict) -> list[str]:
    """Decoded continuations (special tokens skipped, cut at gen['stop'], stripped), one per prompt."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    padder = padding_tokenizer(tokenizer, "left")
    beams = int(gen.get("num_beams", 1))
    stop = list(gen.get("stop") or [])
    config = GenerationConfig(
        max_new_tokens=int(gen.get("max_new_tokens", 64)), do_sample=False, num_beams=beams,
        length_penalty=float(gen.get("length_penalty", 1.0)),
        early_stopping=bool(gen.get("early_stopping", True)) if beams > 1 else False,
        pad_token_id=padder.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
        stop_strings=stop or None,  # stops a row early; the text is still cut at the first stop string below
    )
    no_repeat = int(gen.get("no_repeat_ngram_size", 0))
    bs = int(gen.get("eval_batch_size", 8))
    out: list[str] = []
    try:
        for start in bar(range(0, len(prompts), bs), "generation", total=-(-len(prompts) // bs), unit="batch"):
            chunk = prompts[start:start + bs]
            batch = padder.pad({"input_ids": chunk}, return_attention_mask=True, return_tensors="pt").to(device)
            width = batch["input_ids"].shape[1]
            extra = {"tokenizer": tokenizer} if stop else {}  # stop strings are matched on decoded tokens
            if no_repeat:
                extra["logits_processor"] = LogitsProcessorList([NoRepeatInGenerated(no_repeat, width)])
            seqs = model.generate(**batch, generation_config=config, **extra)
            texts = tokenizer.batch_decode(seqs[:, width:], skip_special_tokens=True)
            out += [cut_at_stop(t, stop).strip() for t in texts]
    finally:
        model.train(was_training)
    return out
