"""Calibration data for post-training pruners, and the block-by-block plumbing they share.

Samples are `nsamples` windows of exactly `seqlen` tokens (no padding, so every token counts in the
statistics), drawn with a seeded generator from one token stream:
- `source: train` - the unpadded training sequences (`ctx.batches`), concatenated;
- `source: <path>` - a local .txt / .jsonl / .json file (see `evaluation.perplexity.read_texts`).
`sampling: stream` cuts random windows of the concatenated stream (SparseGPT's WikiText-2 sampler);
`sampling: document` is Wanda's C4 sampler: pick a random document longer than seqlen, then a random
window of it.

Block inputs are captured with a pre-hook on decoder block 0 that records the hidden states and *every*
other argument (attention mask, position ids, rotary `position_embeddings` of transformers >= 4.45,
GPT-2's positional mask),
then stops the forward. Each pruned block is re-run on its inputs to produce the next block's inputs.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

SOURCES_HELP = "'train' (the training batches) or a path to a local .txt/.jsonl/.json file"


@dataclass
class CalibrationSettings:
    source: str = "train"
    nsamples: int = 128  # Wanda / SparseGPT default
    seqlen: int = 2048  # the papers' value; cap it for models with long contexts (SmolLM2: 8192)
    seed: int = 0
    sampling: str = "stream"  # stream | document
    text_field: str = "text"  # field of .jsonl/.json records
    batch_size: int = 8  # sequences per forward through a block (statistics do not depend on it)
    max_batches: int = 1000  # upper bound on training batches read for source=train

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> CalibrationSettings:
        options = dict(options or {})
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ValueError(f"unknown calibration option(s) {unknown}; allowed: {sorted(allowed)}")
        settings = cls(**options)
        settings.check()
        return settings

    def check(self) -> None:
        for name in ("nsamples", "seqlen", "batch_size", "max_batches"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"calibration.{name} must be >= 1, got {getattr(self, name)}")
        if self.sampling not in ("stream", "document"):
            raise ValueError(f"calibration.sampling must be 'stream' or 'document', got {self.sampling!r}")
        if not self.source or (self.source != "train" and not Path(self.source).expanduser().is_file()):
            raise ValueError(f"calibration.source must be {SOURCES_HELP}; got {self.source!r}")

    def record(self) -> dict:
        return asdict(self)


# ---- token sampling ----------------------------------------------------------------------------
def sample_stream_windows(stream: torch.Tensor, nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """`nsamples` random windows of `seqlen` consecutive tokens of a 1-D token stream."""
    if stream.numel() < seqlen:
        raise ValueError(
            f"calibration data has {stream.numel()} tokens, fewer than one window of seqlen={seqlen}: "
            "lower salience.options.calibration.seqlen or give a larger source"
        )
    gen = torch.Generator().manual_seed(int(seed))
    starts = torch.randint(0, stream.numel() - seqlen + 1, (nsamples,), generator=gen)
    return torch.stack([stream[s : s + seqlen] for s in starts.tolist()])


def sample_document_windows(docs: list[torch.Tensor], nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """Wanda's sampler: a random document with more than seqlen tokens, then a random window in it."""
    long_docs = [d for d in docs if d.numel() > seqlen]
    if not long_docs:
        raise ValueError(
            f"no calibration document is longer than seqlen={seqlen} tokens: use sampling=stream or a smaller seqlen"
        )
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for _ in range(nsamples):
        doc = long_docs[int(torch.randint(0, len(long_docs), (1,), generator=gen))]
        start = int(torch.randint(0, doc.numel() - seqlen, (1,), generator=gen))
        out.append(doc[start : start + seqlen])
    return torch.stack(out)


def documents_from_batches(batches: Iterable[dict], needed_tokens: int, max_batches: int) -> list[torch.Tensor]:
    """Unpadded token sequences of training batches, read until `needed_tokens` are collected."""
    docs, total = [], 0
    for i, batch in enumerate(batches):
        ids = batch["input_ids"].detach().cpu()
        keep = batch.get("attention_mask")
        keep = torch.ones_like(ids, dtype=torch.bool) if keep is None else keep.detach().cpu().bool()
        for row, row_keep in zip(ids, keep):
            docs.append(row[row_keep])
            total += int(row_keep.sum())
        if total >= needed_tokens or i + 1 >= max_batches:
            break
    return docs


def documents_from_file(path: str, tokenizer, text_field: str) -> list[torch.Tensor]:
    from ..evaluation.perplexity import read_texts

    texts = [t for t in read_texts(path, text_field=text_field) if t.strip()]
    return [torch.tensor(tokenizer(t)["input_ids"], dtype=torch.long) for t in texts]


def calibration_samples(
    settings: CalibrationSettings,
    tokenizer=None,
    batches: Callable[[int], Iterable[dict]] | None = None,
) -> torch.Tensor:
    """(nsamples, seqlen) token ids for calibration, from the training batches or a local file."""
    if settings.source == "train":
        if batches is None:
            raise ValueError(f"calibration source 'train' needs training batches; give {SOURCES_HELP}")
        docs = documents_from_batches(
            batches(settings.max_batches), settings.nsamples * settings.seqlen, settings.max_batches
        )
    else:
        if tokenizer is None:
            raise ValueError("calibration from a file needs the tokenizer")
        docs = documents_from_file(settings.source, tokenizer, settings.text_field)
    if settings.sampling == "document":
        return sample_document_windows(docs, settings.nsamples, settings.seqlen, settings.seed)
    stream = torch.cat(docs) if docs else torch.zeros(0, dtype=torch.long)
    return sample_stream_windows(stream, settings.nsamples, settings.seqlen, settings.seed)


# ---- block plumbing ----------------------------------------------------------------------------
class _StopForward(Exception):
    """Raised by the block-0 hook: nothing after the first block needs to run."""


@dataclass
class BlockInputs:
    """Hidden states entering a block, one tensor per micro-batch, and each micro-batch's other
    arguments: extra positional ones (GPT-2 passes its mask positionally) and keyword ones."""

    hidden: list[torch.Tensor]
    kwargs: list[dict]
    args: list[tuple] = field(default_factory=list)

    @property
    def nsamples(self) -> int:
        return sum(h.shape[0] for h in self.hidden)


def get_decoder_layers(model: nn.Module, path: str | None) -> nn.ModuleList:
    if not path:
        raise ValueError("post-training pruning needs the model config's `decoder_layers` (e.g. model.layers)")
    try:
        layers = model.get_submodule(path)
    except AttributeError:
        raise ValueError(f"decoder_layers {path!r} is not a submodule of {type(model).__name__}") from None
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"decoder_layers {path!r} is a {type(layers).__name__}, expected a ModuleList")
    return layers


@torch.no_grad()
def capture_block_inputs(model: nn.Module, first_block: nn.Module, samples: torch.Tensor, batch_size: int) -> BlockInputs:
    """Run the model on `samples` only up to `first_block`, recording its inputs and all its kwargs."""
    device = next(model.parameters()).device
    captured: dict = {}

    def grab(module, args, kwargs):
        kwargs = dict(kwargs)
        hidden = args[0] if args else kwargs.pop("hidden_states")
        captured["hidden"], captured["args"], captured["kwargs"] = hidden, args[1:], kwargs
        raise _StopForward

    hidden, kwargs_list, args_list = [], [], []
    handle = first_block.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        for start in range(0, samples.shape[0], batch_size):
            ids = samples[start : start + batch_size].to(device)
            try:
                model(input_ids=ids, use_cache=False)
            except _StopForward:
                pass
            if "hidden" not in captured:
                raise RuntimeError("the first decoder block was never called: check model.decoder_layers")
            hidden.append(captured.pop("hidden"))
            kwargs_list.append(_share_identical(captured.pop("kwargs"), kwargs_list))
            args_list.append(_share_identical(captured.pop("args"), args_list))
    finally:
        handle.remove()
    return BlockInputs(hidden, kwargs_list, args_list)


def _share_identical(value: Any, previous: list) -> Any:
    """Reuse the previous micro-batch's arguments when equal (equal-length windows give equal masks)."""
    if previous and _same(value, previous[-1]):
        return previous[-1]
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(torch.equal(a, b))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@torch.no_grad()
def run_block(block: nn.Module, inputs: BlockInputs) -> BlockInputs:
    """Outputs of `block` for every captured micro-batch: the next block's inputs."""
    outs = []
    args = inputs.args or [()] * len(inputs.hidden)
    for hidden, extra, kwargs in zip(inputs.hidden, args, inputs.kwargs):
        out = block(hidden, *extra, **kwargs)
        outs.append(out[0] if isinstance(out, (tuple, list)) else out)
    return BlockInputs(outs, inputs.kwargs, inputs.args)
