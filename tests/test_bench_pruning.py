"""benchmarks/bench_pruning.py's own logic: option checks, mask agreement, the clear errors of its env helper, the
config it writes for older transformers, and the reference-repo worker on a stand-in repo and a tiny Llama. The
benchmark itself (pruning SmolLM2 on every side, pip-installing llm-compressor / the reference env) is not run here."""
from __future__ import annotations

import importlib.util
import json
import os
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
    env = load("bench_env")
    cmd = [sys.executable, "-c", "import sys; print('resolver said no'); sys.exit(3)"]
    with pytest.raises(env.BenchEnvError) as exc:
        env._run("installing llmcompressor", cmd, tmp_path / "install.log")
    text = str(exc.value)
    assert text.startswith("installing llmcompressor failed:") and "exited 3" in text and "resolver said no" in text
    assert "resolver said no" in (tmp_path / "install.log").read_text()
    with pytest.raises(env.BenchEnvError, match="could not start"):
        env._run("creating the venv", [str(tmp_path / "no-such-python")], tmp_path / "install.log")
    assert env.public_version("2.13.0+cpu") == "2.13.0" and env.public_version("2.13.0") == "2.13.0"


def test_worker_failure_is_reported_with_its_log(tmp_path):
    env = load("bench_env")
    # an interpreter that cannot run the worker's imports stands for a broken env
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named llmcompressor' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(env.BenchEnvError, match="llm-compressor run failed \\(exit 1\\)") as exc:
        env.run_worker(fake, BENCH / "llmcompressor_worker.py", ["--pruner", "wanda"], tmp_path / "out", threads=1,
                       label="llm-compressor run")
    assert "No module named llmcompressor" in str(exc.value)
    assert (tmp_path / "out" / "worker.log").is_file()


def tiny_llama(path: Path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=64,
                         rope_parameters={"rope_type": "default", "rope_theta": 500.0})
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(path)
    return model


def test_legacy_rope_keys_let_older_transformers_build_the_same_rotary(tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_llama(tmp_path / "m")
    assert "rope_theta" not in json.loads((tmp_path / "m" / "config.json").read_text())
    assert load("bench_pruning").write_legacy_rope(tmp_path / "m") == 500.0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["rope_theta"] == 500.0 and "rope_scaling" not in config  # default rope needs no scaling key
    ids = torch.arange(12).unsqueeze(0)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():  # and our transformers reads the patched file as before
        assert torch.equal(model(ids).logits, reloaded(ids).logits)


# A stand-in for the Wanda repo's layout: lib/data.py's get_loaders would download C4; lib/prune.py's functions take
# (args, model, tokenizer, device, prune_n, prune_m), read model.seqlen / model.hf_device_map, and call
# torch.cuda.synchronize as the real SparseGPT does. This one zeroes the prune_n smallest |W| of every prune_m (or the
# lower half of each row) and leaves what it was given in seen.json.
STAND_IN_PRUNE = '''
import json, os
import torch
from .data import get_loaders

def _record(args, model, loader, prune_n, prune_m):
    json.dump({"nsamples": args.nsamples, "seqlen": model.seqlen, "device_map": model.hf_device_map,
               "first_ids": loader[0][0].tolist(), "n": len(loader), "prune_n": prune_n, "prune_m": prune_m},
              open(os.environ["SEEN"], "w"))

def prune_wanda(args, model, tokenizer, device, prune_n=0, prune_m=0):
    loader, _ = get_loaders("c4", nsamples=args.nsamples, seed=args.seed, seqlen=model.seqlen, tokenizer=tokenizer)
    _record(args, model, loader, prune_n, prune_m)
    torch.cuda.synchronize()
    for layer in model.model.layers:
        for m in layer.modules():
            if isinstance(m, torch.nn.Linear):
                W = m.weight.data
                if prune_n:
                    groups = W.abs().reshape(W.shape[0], -1, prune_m)
                    idx = groups.topk(prune_n, dim=-1, largest=False).indices
                    W.view(W.shape[0], -1, prune_m).scatter_(-1, idx, 0.0)
                else:
                    idx = W.abs().sort(dim=1, stable=True).indices[:, : int(W.shape[1] * args.sparsity_ratio)]
                    W.scatter_(1, idx, 0.0)

prune_sparsegpt = prune_wanda
'''


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_reference_worker_feeds_our_ids_to_the_repo_and_saves_its_weights(tmp_path, pattern):
    import subprocess

    repo = tmp_path / "wanda"
    (repo / "lib").mkdir(parents=True)
    (repo / "lib" / "data.py").write_text("def get_loaders(*a, **k):\n    raise RuntimeError('would download C4')\n")
    (repo / "lib" / "prune.py").write_text(STAND_IN_PRUNE)
    tiny_llama(tmp_path / "model")
    ids = torch.randint(0, 64, (3, 10))
    torch.save(ids, tmp_path / "calib.pt")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(BENCH / "reference_pruning_worker.py"), "--repo", str(repo),
                           "--model-dir", str(tmp_path / "model"), "--calib", str(tmp_path / "calib.pt"),
                           "--pruner", "sparsegpt", "--pattern", pattern, "--sparsity", "0.5", "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ, "SEEN": str(tmp_path / "seen.json")})
    assert proc.returncode == 0, proc.stderr
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert (seen["nsamples"], seen["seqlen"], seen["n"], seen["device_map"]) == (3, 10, 3, {})
    assert seen["first_ids"] == [ids[0].tolist()]  # one (1, seqlen) row per sample, as its C4 loader yields
    assert (seen["prune_n"], seen["prune_m"]) == ((0, 0) if pattern == "unstructured" else (2, 4))
    result = json.loads((out / "result.json").read_text())
    assert result["function"] == "lib.prune.prune_sparsegpt" and result["nsamples"] == 3 and result["seconds"] > 0
    assert result["rope_theta"] is None  # transformers 5 has no config.rope_theta (rope_parameters); 4.x reads 500.0
    weights = torch.load(out / "pruned_weights.pt")
    assert "model.layers.0.self_attn.q_proj.weight" in weights and "model.embed_tokens.weight" not in weights
    q = weights["model.layers.1.self_attn.q_proj.weight"]  # 16 x 16
    assert ((q == 0).sum(dim=1) == 8).all()  # half of each row either way


def test_reference_worker_refuses_a_directory_that_is_not_the_repo(tmp_path):
    import subprocess

    proc = subprocess.run([sys.executable, str(BENCH / "reference_pruning_worker.py"), "--repo", str(tmp_path),
                           "--model-dir", str(tmp_path), "--calib", str(tmp_path / "c.pt"), "--pruner", "wanda",
                           "--sparsity", "0.5", "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode != 0 and "no lib/prune.py there" in proc.stderr


def test_report_prints_one_time_ratio_per_side_and_pruner(files, capsys):
    bench = load("bench_pruning")
    args = bench.parse_args([*files, "--pruners", "wanda", "--patterns", "unstructured"])
    side = {"seconds": 4.0, "cpu_seconds": 4.0, "sparsity": 0.5, "ppl": 30.0,
            "agreement": {"overall": 1.0, "lowest": 0.99}}
    rows = [{"pruner": "wanda", "pattern": "unstructured", "ours": {**side, "seconds": 2.0, "cpu_seconds": 3.0},
             "llmcompressor": side, "reference": {**side, "seconds": 8.0, "cpu_seconds": 6.0}}]
    bench.print_report(rows, 20.0, args, ["llmcompressor", "reference"])
    out = capsys.readouterr().out
    assert "wanda time ours/llmcompressor: 0.50   (CPU time 0.75" in out
    assert "wanda time ours/reference: 0.25   (CPU time 0.50" in out
    assert "perplexity ours / llmcompressor / reference: 30.00 / 30.00 / 30.00" in out
