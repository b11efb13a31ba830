"""Loss and gradients do not depend on how a batch is split: grad_accum=2 x batch 4 equals grad_accum=1 x batch 8,
for every task kind, through the real run() (transformers' Trainer skips dividing by the accumulation steps for
any forward that takes **kwargs; only causal-LM losses actually normalise by the whole batch's token count)."""
import json
import random

import pytest
from conftest import TINY, compose_cfg

from sparsetune.run import run

# Dropout off: the two splits draw different dropout masks, so the runs would differ for that reason alone.
# tiny-bert inherits BertConfig's dropout of 0.1 and LoRA's default is 0.05; tiny-llama has none.
NO_DROPOUT = ["+model.arch.hidden_dropout_prob=0.0", "+model.arch.attention_probs_dropout_prob=0.0"]
METHOD = {"full": ["method=full"], "pst": ["method=pst"], "lora": ["method=lora", "method.dropout=0.0"],
          "full-label-smoothing": ["method=full", "train.label_smoothing=0.1"]}  # Trainer computes this loss itself
WORDS = "the a cat dog sat ran on under mat sofa big small red blue quickly slowly".split()


def write_stsb(root, n_train=64, n_dev=32):
    """A tiny STS-B in GLUE's original layout: random sentence pairs with scores in [0, 5]."""
    rng = random.Random(0)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    sentence = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) + "."  # noqa: E731
    (root / "STS-B").mkdir(parents=True)
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        rows = [f"{i}\tmain\tx\t2012\t{i}\tnone\tnone\t{sentence()}\t{sentence()}\t{rng.uniform(0, 5):.3f}\n" for i in range(n)]
        (root / "STS-B" / name).write_text(header + "".join(rows), encoding="utf-8")
    return root


def write_alpaca(path, n=40):
    """Instructions with responses of different lengths, so micro-batches hold different numbers of target tokens."""
    rng = random.Random(0)
    rows = [{"instruction": f"Repeat {rng.choice(WORDS)} a few times.", "input": rng.choice(["", "twice"]),
             "output": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))} for _ in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def split_runs(tmp_path, overrides):
    """(eval loss, first logged grad norm, first logged loss) for batch 8 in one step and in two accumulated halves."""
    out = []
    for accum, batch in ((1, 8), (2, 4)):
        cfg = compose_cfg([*TINY, "train.max_steps=3", "train.logging_steps=1", "export=false", *overrides,
                           f"train.grad_accum={accum}", f"train.batch_size={batch}"])
        res = run(cfg, tmp_path / f"accum{accum}")
        first = next(h for h in res["train_log"] if "grad_norm" in h)
        out.append((res["metrics"]["eval"]["loss"], first["grad_norm"], first["loss"]))
    return out


def assert_split_invariant(runs):
    (loss1, grad1, train1), (loss2, grad2, train2) = runs
    assert loss2 == pytest.approx(loss1, abs=1e-4)
    assert grad2 == pytest.approx(grad1, abs=1e-4)
    assert train2 == pytest.approx(train1, abs=1e-4)


@pytest.mark.parametrize("method", ["full", "lora", "pst", "full-label-smoothing"])
def test_classification(tmp_path, method):
    assert_split_invariant(split_runs(tmp_path, [*METHOD[method], *NO_DROPOUT]))


def test_regression(tmp_path):
    glue = write_stsb(tmp_path / "glue")
    assert_split_invariant(split_runs(tmp_path, ["method=full", "task=glue/stsb", f"task.data_dir={glue}", *NO_DROPOUT]))


@pytest.mark.parametrize("method", ["full", "lora", "full-label-smoothing"])
def test_causal_lm_is_token_weighted(tmp_path, method):
    data = write_alpaca(tmp_path / "alpaca.jsonl")
    assert_split_invariant(split_runs(tmp_path, [
        "model=tiny-llama", *METHOD[method], "task=alpaca", f"+task.data_files.train={data}",
        "task.options.val_set_size=8", "task.max_length=128", "task.max_train_samples=null", "task.max_eval_samples=null"]))
