"""Per-example training losses from model outputs, for gradient statistics.

Gradient metrics need the loss of each example on its own (Fisher: mean of per-example g^2) and a
temperature for GraSP, so the loss is recomputed from the logits here rather than taken from the
model's batch-mean `loss`. The three task kinds match what the HF heads compute:
classification = cross-entropy, regression (one output, float labels) = squared error,
causal LM (3-D logits) = next-token cross-entropy, averaged over each example's labelled tokens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def split_batch(batch: dict) -> tuple[dict, torch.Tensor]:
    if "labels" not in batch:
        raise ValueError(f"salience batches need 'labels'; got keys {sorted(batch)}")
    return {k: v for k, v in batch.items() if k != "labels"}, batch["labels"]


def logits_of(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if getattr(output, "logits", None) is not None:
        return output.logits
    return output[0]


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(batch,) losses; logits are divided by `temperature` for the cross-entropy kinds."""
    logits = logits.float()
    if logits.dim() == 3:  # causal LM: position t predicts token t+1
        shifted = logits[:, :-1] / temperature
        targets = labels[:, 1:]
        tok = F.cross_entropy(shifted.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
        count = (targets != IGNORE_INDEX).sum(1).clamp(min=1)
        return tok.sum(1) / count
    if logits.shape[-1] == 1 or labels.is_floating_point():
        return (logits.reshape(labels.shape) - labels.float()) ** 2
    return F.cross_entropy(logits / temperature, labels, reduction="none")
