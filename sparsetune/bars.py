"""Progress bars for the long steps outside the Trainer loop: pruning block by block, salience batches,
perplexity chunks, generation. They follow transformers' switch (`transformers.utils.logging.disable_progress_bar`,
HF_HUB_DISABLE_PROGRESS_BARS), so a user who silenced the Trainer's bars silences these too."""
from __future__ import annotations

from collections.abc import Iterable

from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging


def bar(iterable: Iterable, desc: str, total: int | None = None, unit: str = "it") -> Iterable:
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True,
                disable=not hf_logging.is_progress_bar_enabled())
