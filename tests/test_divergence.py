"""A diverging run stops at the step it went non-finite (loss, gradients, weights, evaluation loss) with Diverged."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose_cfg
from torch import nn
from transformers import TrainerCallback, TrainingArguments

from sparsetune.divergence import Diverged, DivergenceGuard, check_finite_metrics, check_finite_model
from sparsetune.masks import topk_mask
from sparsetune.training import MethodTrainer

NAN, INF = float("nan"), float("inf")
REPO = Path(__file__).resolve().parents[1]


class Toy(nn.Module):
    """loss = mean((x.w - y)^2); `poison` maps a forward call (1-based) to what goes wrong in it."""

    def __init__(self, poison=None):
        super().__init__()
        self.w = nn.Parameter(torch.ones(4))
        self.unused = nn.Parameter(torch.zeros(2))  # trainable, outside the loss: only the weight check sees it
        self.frozen = nn.Parameter(torch.zeros(2), requires_grad=False)
        self.poison, self.calls = poison or {}, 0

    def forward(self, x, labels):
        self.calls += 1
        loss = ((x @ self.w - labels) ** 2).mean()
        kind = self.poison.get(self.calls) if self.training else None
        if kind == "loss":
            loss = loss * NAN
        elif kind == "grad":  # adds 0 to the loss; its gradient is 0 * inf = NaN
            loss = loss + 0 * torch.sqrt(self.w - self.w.detach()).sum()
        return {"loss": loss}


def train(tmp_path, model, callbacks=(), **args):
    data = [{"x": torch.randn(4, generator=torch.Generator().manual_seed(i)), "labels": torch.tensor(1.0)} for i in range(16)]
    args = TrainingArguments(**{
        "output_dir": str(tmp_path), "max_steps": 6, "per_device_train_batch_size": 2, "learning_rate": 0.01,
        "logging_steps": 2, "save_strategy": "no", "report_to": "none", "use_cpu": True, "disable_tqdm": True,
        "logging_nan_inf_filter": False, "remove_unused_columns": False, **args})
    trainer = MethodTrainer(model=model, args=args, train_dataset=data, callbacks=[DivergenceGuard(), *callbacks])
    trainer.train()
    return trainer


def test_diverged_says_what_and_when():
    e = Diverged("non-finite training loss (nan)", 3)
    assert (e.what, e.step, str(e)) == ("non-finite training loss (nan)", 3, "non-finite training loss (nan) at step 3")
    assert isinstance(e, RuntimeError) and str(Diverged("x")) == "x"


def test_check_finite_model_names_the_first_bad_parameter():
    model = Toy()
    check_finite_model(model, 1)  # all finite: no raise
    with torch.no_grad():
        model.frozen[0] = NAN
    check_finite_model(model, 1, trainable_only=True)  # frozen weights never change in training
    with pytest.raises(Diverged, match=r"non-finite weights in frozen \(1 of 2 entries NaN/inf\) at step 4"):
        check_finite_model(model, 4)
    with torch.no_grad():
        model.w[1:] = INF
    with pytest.raises(Diverged, match=r"weights in w \(3 of 4"):
        check_finite_model(model, 4)


def test_check_finite_metrics_stops_on_losses_not_on_undefined_correlations():
    check_finite_metrics({"eval_loss": 0.5, "eval_pearson": NAN, "epoch": 1.0, "note": "x", "ok": True}, 2)
    with pytest.raises(Diverged, match=r"non-finite eval_loss \(nan\) at step 2"):
        check_finite_metrics({"eval_loss": NAN}, 2)
    with pytest.raises(Diverged, match=r"non-finite eval\.loss \(inf\)"):
        check_finite_metrics({"eval": {"accuracy": 0.5, "loss": INF}}, 2)
    with pytest.raises(Diverged, match="grad_norm"):
        check_finite_metrics({"grad_norm": torch.tensor(NAN)}, 1)


def test_guard_stops_at_the_step_whose_loss_is_nan(tmp_path):
    model = Toy(poison={3: "loss"})
    with pytest.raises(Diverged, match=r"non-finite training loss \(nan\) at step 3") as e:
        train(tmp_path, model)
    assert e.value.step == 3
    assert not model._forward_hooks  # the guard leaves the model as it found it


def test_guard_stops_before_a_nan_gradient_reaches_the_weights(tmp_path):
    model = Toy(poison={2: "grad"})
    with pytest.raises(Diverged, match="non-finite gradients at step 2"):
        train(tmp_path, model)
    check_finite_model(model)  # the optimizer never applied the NaN gradient


def test_guard_checks_the_weights_at_logging_steps(tmp_path):
    class PoisonUnused(TrainerCallback):  # weights outside the loss: neither loss nor gradients show it
        def on_optimizer_step(self, args, state, control, model=None, **kw):
            if state.global_step == 2:  # during the third update
                model.unused.data[0] = NAN

    with pytest.raises(Diverged, match=r"weights in unused .* at step 4"):  # logging_steps=2: next check after step 4
        train(tmp_path, Toy(), callbacks=[PoisonUnused()])


def test_guard_needs_true_logged_losses(tmp_path):
    with pytest.raises(ValueError, match="logging_nan_inf_filter=False"):
        train(tmp_path, Toy(), logging_nan_inf_filter=True)


def test_a_healthy_run_is_not_stopped(tmp_path):
    trainer = train(tmp_path, Toy())
    assert trainer.state.global_step == 6 and all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)


def test_an_empty_trainable_tensor_is_no_divergence(tmp_path):
    # global SPEFT ranking can leave a layer with no selected entry: a 0-element parameter with a 0-element gradient
    class WithEmpty(Toy):
        def __init__(self):
            super().__init__()
            self.empty = nn.Parameter(torch.zeros(0))

        def forward(self, x, labels):
            out = super().forward(x, labels)
            return {"loss": out["loss"] + self.empty.sum()}  # a 0-element gradient, as an empty SPEFT layer's

    trainer = train(tmp_path, WithEmpty())
    assert trainer.state.global_step == 6


def test_nan_mask_scores_are_a_divergence_at_the_trainer_step(tmp_path):
    with pytest.raises(Diverged, match="NaN"):
        topk_mask(torch.tensor([1.0, NAN, 2.0, 3.0]), 0.5)

    class MaskUpdate(TrainerCallback):  # a sparse method's mask update, as the schedule runs it before a step
        def on_step_begin(self, args, state, control, **kw):
            topk_mask(torch.tensor([1.0, NAN if state.global_step == 3 else 0.0, 2.0, 3.0]), 0.5)

    with pytest.raises(Diverged, match="mask scores: the weights diverged at step 3") as e:
        train(tmp_path, Toy(), callbacks=[MaskUpdate()])
    assert e.value.step == 3  # the weights after the third update gave the NaN scores


def test_full_fine_tuning_at_lr_1e6_raises_diverged(tmp_path):
    """The issue's case in process (the guard passed as an extra callback: this holds with or without run()'s own)."""
    cfg = compose_cfg(["model=tiny-llama", "debug=fast", "method=full", "train.lr=1e6"])
    from sparsetune.run import run

    with pytest.raises(Diverged) as e:
        run(cfg, tmp_path / "run", callbacks=[DivergenceGuard()])
    assert 1 <= e.value.step <= 8
    assert not (tmp_path / "run" / "model").exists()


def _strict_json(path: Path) -> dict:
    def reject(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=reject)


def test_cli_records_a_diverged_run_and_exports_nothing(tmp_path):
    """The issue's check, end to end: `train.py model=tiny-llama debug=fast method=full train.lr=1e6`."""
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "train.py", "model=tiny-llama", "debug=fast", "method=full", "train.lr=1e6",
                           f"hydra.run.dir={run_dir}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr and "diverged" in proc.stderr + proc.stdout
    rec = _strict_json(run_dir / "results.json")
    assert rec["status"] == "diverged" and 1 <= rec["diverged_at_step"] <= 8
    assert not (run_dir / "model").exists()
