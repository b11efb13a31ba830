"""Every command in README.md runs as written, on tiny models and a tiny GLUE dir made here.

Commands come from README.md itself (its ```bash blocks, plus inline `python train.py ...` commands), so a
command added to the README is tested without touching this file:
- `train.py` commands run as subprocesses with the README's overrides, plus a tiny model (`model=tiny-bert`,
  tiny-llama for causal-LM tasks; dry runs keep their model: they load no weights), `debug=fast` and a run/sweep
  dir under tmp_path; `task.data_dir=...` points at the tiny GLUE dir. `hardware=gpu*` commands are composed
  only (no GPU here).
- `make` commands: `make -n` must expand them, and every train.py line of the expansion must compose.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF, has_optuna_sweeper
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from sparsetune.tasks.glue_files import LAYOUT, SPLIT_FILES

ROOT = Path(CONF).parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
OFFLINE_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_EVALUATE_OFFLINE": "1", "WANDB_MODE": "disabled"}


# ---- the README's commands -------------------------------------------------------------------------------
def bash_commands(text: str) -> list[str]:
    """Lines of the ```bash blocks, comments removed, backslash continuations joined."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(shlex.join(words))
    return out


def inline_commands(text: str) -> list[str]:
    """Inline `python train.py ...` commands; templates with `...` stand for a command, they are not one."""
    spans = re.findall(r"`((?:\.venv/bin/)?python [^`]+)`", text)
    return [s for s in spans if "train.py" in s and "..." not in s]


def has_cluster_launchers() -> bool:
    """Whether the optional extra (pip install ".[cluster]": Hydra's submitit and joblib launchers) is installed."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(f"hydra_plugins.{p}") for p in ("hydra_submitit_launcher", "hydra_joblib_launcher"))
    except ModuleNotFoundError:
        return False


COMMANDS = bash_commands(README) + inline_commands(README)
MAKE_COMMANDS = [c for c in COMMANDS if shlex.split(c)[0] == "make"]
TRAIN_COMMANDS = [c for c in COMMANDS if c not in MAKE_COMMANDS and any(w.endswith("train.py") for w in shlex.split(c))]


def train_argv(words: list[str]) -> list[str]:
    """The arguments after train.py."""
    i = next(i for i, w in enumerate(words) if w.endswith("train.py"))
    return words[i + 1:]


def jobs(overrides: list[str], cover_only: bool = False) -> list[list[str]]:
    """The jobs a multirun would launch (Hydra's own sweep expansion). cover_only: just enough jobs to compose every
    swept value once (job i takes value i of each list), which keeps 40-job table sweeps cheap to check."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    if not cover_only:
        return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]
    lists = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
             else [f"{o.get_key_element()}={o.get_value_element_as_str()}"] for o in parsed]
    return [[values[i % len(values)] for values in lists] for i in range(max(map(len, lists), default=1))]


def composed(job_overrides: list[list[str]]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return [compose(config_name="train", overrides=job) for job in job_overrides]


# ---- tiny data -------------------------------------------------------------------------------------------
def write_tiny_glue(root: Path, rows: int = 24) -> Path:
    """Every GLUE task in its original layout (CoLA without header, word labels for RTE/QNLI/MNLI)."""
    for task, (dirname, fields, label_col, label_map) in LAYOUT.items():
        labels = list(label_map) if label_map else (["0.000", "2.500", "5.000"] if task == "stsb" else ["0", "1"])
        if isinstance(label_col, int):  # no header: columns by position
            width = max([*fields.values(), label_col]) + 1
            header, place = None, {**fields, "label": label_col}
        else:
            header = [*fields.values(), label_col]
            width, place = len(header), {**{k: header.index(v) for k, v in fields.items()}, "label": header.index(label_col)}
        lines = ["\t".join(header)] if header else []
        for i in range(rows):
            label = labels[i % len(labels)]
            row = ["x"] * width
            for k in fields:
                row[place[k]] = f"{'a charming film' if i % 2 else 'a dull mess'} {k} {i}"
            row[place["label"]] = label
            lines.append("\t".join(row))
        (root / dirname).mkdir(parents=True, exist_ok=True)
        for name in SPLIT_FILES.values():
            (root / dirname / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tiny_glue(tmp_path_factory):
    return write_tiny_glue(tmp_path_factory.mktemp("glue"))


def tiny_overrides(argv: list[str], glue: Path) -> list[str]:
    return [f"task.data_dir={glue}" if a.startswith("task.data_dir=") else a for a in argv]


# ---- tests -----------------------------------------------------------------------------------------------
def test_the_readme_commands_are_found():
    assert any(" -m " in c for c in TRAIN_COMMANDS), TRAIN_COMMANDS  # the sweep example
    assert any("hardware=gpu" in c for c in TRAIN_COMMANDS) and any("dry_run=true" in c for c in TRAIN_COMMANDS)
    assert {"make demo", "make test", "make dry-runs"} <= set(MAKE_COMMANDS), MAKE_COMMANDS


@pytest.mark.parametrize("command", TRAIN_COMMANDS, ids=[" ".join(train_argv(shlex.split(c))) for c in TRAIN_COMMANDS])
def test_readme_train_command_runs(command, tiny_glue, tmp_path):
    words = shlex.split(command)
    # a launcher line (torchrun / accelerate launch, env settings first) runs here as its one-process equivalent:
    # its overrides must compose and run; tests/test_ddp.py runs real multi-process launches
    launcher = [w for w in words[: words.index(next(w for w in words if w.endswith("train.py")))] if "=" not in w]
    assert launcher[:1] in ([".venv/bin/python"], ["python"], ["torchrun"], ["accelerate"]), f"not a train.py command line: {command}"
    argv = tiny_overrides(train_argv(words), tiny_glue)
    multirun = "-m" in argv or "--multirun" in argv
    overrides = [a for a in argv if not a.startswith("-")]
    if any(a.startswith("hparams_search=") for a in argv) and not has_optuna_sweeper():
        # the optional extra is not installed: the command must say how to get it, in one line
        proc = subprocess.run([sys.executable, "train.py", *argv], cwd=ROOT, env=OFFLINE_ENV, capture_output=True, text=True)
        assert proc.returncode == 2 and 'pip install ".[optuna]"' in proc.stderr.strip().splitlines()[-1], proc.stderr
        return
    if any(a.startswith("hydra/launcher=") for a in argv) and not has_cluster_launchers():
        # the launchers' extra is not installed: the command must say how to get it, in one line
        proc = subprocess.run([sys.executable, "train.py", *argv], cwd=ROOT, env=OFFLINE_ENV, capture_output=True, text=True)
        assert proc.returncode == 2 and 'pip install ".[cluster]"' in proc.stderr.strip().splitlines()[-1], proc.stderr
        return
    expected_jobs = jobs(overrides)
    cfgs = composed(expected_jobs[:1])  # the config of the first job: task kind, hardware, dry run
    cfg = cfgs[0]
    if cfg.hardware.device == "cuda":  # no GPU here: the command composes into a GPU config, nothing runs
        assert cfg.hardware.precision in ("bf16", "fp16")
        return
    extra = ["debug=fast"]
    if not cfg.dry_run:  # dry runs build from the model's config on the meta device: no weights to replace
        extra.append("model=tiny-llama" if cfg.task.kind == "causal_lm" else "model=tiny-bert")
    out = tmp_path / "out"
    cmd = [sys.executable, "train.py", *argv, *extra, f"hydra.{'sweep' if multirun else 'run'}.dir={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=OFFLINE_ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
    records = [json.loads(p.read_text()) for p in sorted(out.rglob("results.json"))]
    optuna = (out / "optimization_results.yaml").exists()
    if optuna:  # an Optuna search: one job per trial, the best recorded
        trials = [int(a.split("=")[1]) for a in argv if a.startswith("hydra.sweeper.n_trials=")]
        expected_jobs = [overrides] * (trials[-1] if trials else 8)
    assert len(records) == len(expected_jobs) and all(r["status"] == "completed" for r in records)
    for r in records:  # a method that ignores method.sparsity (full in a sweep over sparsity) says so
        given = r["config"]["method"].get("sparsity")
        if given is not None and r["sparsity"]["target"] != pytest.approx(given):
            assert r["sparsity"]["target"] == 0.0 and "not applicable" in r["method"].get("sparsity_note", ""), r["method"]
    if multirun:
        assert f"totals: {len(expected_jobs)} completed" in proc.stdout
        # README: scripts/make_table.py <sweep dirs> [--paper pst-table2] builds a table from the results
        table = subprocess.run([sys.executable, "scripts/make_table.py", str(out), "--paper", "pst-table2"], cwd=ROOT,
                               env=OFFLINE_ENV, capture_output=True, text=True, timeout=60)
        assert table.returncode == 0, table.stderr
        # rows are the settings that differ: the methods of a grid sweep, the sampled lrs of an Optuna search
        names = {str(r["config"]["train"]["lr"]) if optuna else r["config"]["method"]["name"] for r in records}
        assert all(f"| {n} |" in table.stdout for n in names), table.stdout


@pytest.mark.parametrize("command", MAKE_COMMANDS)
def test_readme_make_command_expands_and_its_runs_compose(command):
    proc = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.replace("\\\n", " ").splitlines()
    train_lines = [shlex.split(line) for line in lines if "train.py" in line]
    for words in train_lines:
        overrides = [a for a in train_argv(words) if not a.startswith("-")]
        assert composed(jobs(overrides, cover_only=True)), words
    for path in re.findall(r"\b((?:scripts|benchmarks)/\w+\.py)", proc.stdout):
        assert (ROOT / path).is_file(), f"{command} runs {path}, which does not exist"
    target = shlex.split(command)[1]
    if target not in ("test", "setup", "clean"):  # the others run experiments
        assert train_lines or re.search(r"(scripts|benchmarks)/\w+\.py", proc.stdout), proc.stdout


def test_tensorboard_logger_writes_event_files(tiny_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sparsetune.run import run

    res = run(tiny_cfg("method=full", "logger=tensorboard", "train.max_steps=2", "train.logging_steps=1", "export=false"),
              tmp_path)
    assert res["status"] == "completed"
    events = sorted(tmp_path.rglob("events.out.tfevents.*"))
    assert events, "logger=tensorboard wrote no event file"
    scalars = set()
    for event_dir in {e.parent for e in events}:
        acc = EventAccumulator(str(event_dir))
        acc.Reload()
        scalars |= set(acc.Tags()["scalars"])
    assert "train/loss" in scalars, scalars
