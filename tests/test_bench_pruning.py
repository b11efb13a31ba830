"""benchmarks/bench_pruning.py's own logic: option checks, mask agreement, and the clear errors of its llm-compressor
env helper. The benchmark itself (pruning SmolLM2 on both sides, pip-installing llm-compressor) is not run here."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def files(tmp_path):
    calib, wiki = tmp_path / "calib.json", tmp_path / "wiki.txt"
    calib.write_text(json.dumps([{"text": "a b c"}]))
    wiki.write_text("some text")
    return ["--calib", str(calib), "--wikitext", str(wiki)]


def test_options_default_and_paper_calibration(files):
    bench = load("bench_pruning")
    args = bench.parse_args(files)
    assert (args.nsamples, args.seqlen, args.pruners, args.patterns) == (32, 512, ["wanda", "sparsegpt"],
                                                                          ["unstructured", "2:4"])
    assert args.attention == "eager"
    args = bench.parse_args([*files, "--paper"])
    assert (args.nsamples, args.seqlen) == (128, 2048)


@pytest.mark.parametrize("argv, message", [
    (["--pruners", "magnitude"], "--pruners magnitude: not valid; valid: wanda, sparsegpt"),
    (["--patterns", "4:8"], "--patterns 4:8: not valid; valid: unstructured, 2:4"),
    (["--sparsity", "1.5"], "--sparsity must be in (0, 1)"),
    (["--nsamples", "0"], "expected a positive integer, got '0'"),
])
def test_bad_options_are_refused_with_the_valid_ones(files, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        load("bench_pruning").parse_args([*files, *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_missing_data_file_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load("bench_pruning").parse_args(["--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert "--calib" in err and "alpaca_tiny.json: no such file" in err


def test_mask_agreement_counts_shared_zero_positions():
    agree = load("bench_pruning").mask_agreement
    ours = {"a": torch.tensor([[True, True, False, False]]), "b": torch.tensor([[True, False, True, False]])}
    theirs = {"a": torch.tensor([[True, False, True, False]]), "b": torch.tensor([[True, False, True, False]])}
    res = agree(ours, theirs)
    assert res["per_matrix"] == {"a": 0.5, "b": 1.0}
    assert res["overall"] == pytest.approx(3 / 4) and (res["lowest"], res["lowest_matrix"]) == (0.5, "a")
    with pytest.raises(ValueError, match="different matrices: only ours \\['b'\\]"):
        agree(ours, {"a": theirs["a"]})


def test_env_helper_names_the_failed_step_and_its_output(tmp_path):
    env = load("llmcompressor_env")
    cmd = [sys.executable, "-c", "import sys; print('resolver said no'); sys.exit(3)"]
    with pytest.raises(env.LLMCompressorEnvError) as exc:
        env._run("installing llmcompressor", cmd, tmp_path / "install.log")
    text = str(exc.value)
    assert text.startswith("installing llmcompressor failed:") and "exited 3" in text and "resolver said no" in text
    assert "resolver said no" in (tmp_path / "install.log").read_text()
    with pytest.raises(env.LLMCompressorEnvError, match="could not start"):
        env._run("creating the venv", [str(tmp_path / "no-such-python")], tmp_path / "install.log")
    assert env.public_version("2.13.0+cpu") == "2.13.0" and env.public_version("2.13.0") == "2.13.0"


def test_worker_failure_is_reported_with_its_log(tmp_path):
    env = load("llmcompressor_env")
    # an interpreter that cannot run the worker's imports stands for a broken env
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named llmcompressor' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(env.LLMCompressorEnvError, match="llm-compressor run failed \\(exit 1\\)") as exc:
        env.run_worker(fake, ["--pruner", "wanda"], tmp_path / "out", threads=1)
    assert "No module named llmcompressor" in str(exc.value)
    assert (tmp_path / "out" / "worker.log").is_file()
