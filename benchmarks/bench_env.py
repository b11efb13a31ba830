"""Throwaway venvs for bench_pruning.py's other sides (llm-compressor, the Wanda reference repo): each pins another
transformers than ours, so each runs in a venv of its own, through a worker script that imports nothing of ours.

`ensure_env` creates the venv with `python -m venv` and pip-installs torch (pinned to our version, so pip's
configured find-links / index give the same CPU build instead of a CUDA one from PyPI) and then the side's
requirements with that torch pin, letting pip resolve the rest. A marker file records what was installed; an env
whose marker matches and whose interpreter imports the probe modules is reused as it is.
Every failure raises BenchEnvError saying which step failed, the command, and the tail of its output.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MARKER = ".sparsetune-bench-env.json"


class BenchEnvError(RuntimeError):
    """A side's env could not be installed or its worker could not run; the message says which step and why."""


def default_env_dir(name: str) -> Path:
    cache = os.environ.get("SPARSETUNE_CACHE") or str(Path.home() / ".cache" / "sparsetune")
    return Path(cache).expanduser() / name


def public_version(version: str) -> str:
    """'2.13.0+cpu' -> '2.13.0': the pin matches the local CPU wheel and the PyPI release alike."""
    return version.split("+", 1)[0]


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(step: str, cmd: list[str], log: Path, timeout: float | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BenchEnvError(f"{step}: `{' '.join(cmd)}` did not finish in {timeout:.0f} s") from e
    except OSError as e:
        raise BenchEnvError(f"{step}: `{' '.join(cmd)}` could not start: {e}") from e
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}\n")
    if proc.returncode != 0:
        raise BenchEnvError(
            f"{step} failed: `{' '.join(cmd)}` exited {proc.returncode} (full log: {log}); last lines:\n"
            + _tail(proc.stdout + "\n" + proc.stderr))
    return proc.stdout


def env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _probe(modules: list[str]) -> str:
    """Python code that imports the modules and prints their versions as one JSON line."""
    names = ", ".join(modules)
    return f"import json, {names}; print(json.dumps({{m.__name__: m.__version__ for m in ({names},)}}))"


def ensure_env(env_dir: Path, torch_version: str, requirements: list[str], probe: list[str], pip_args: list[str] = (),
               label: str = "bench env", log=print) -> Path:
    """The venv's python, with the probe modules importable; creates or repairs the env when needed."""
    env_dir = Path(env_dir).expanduser().resolve()
    python = env_python(env_dir)
    torch_pin = f"torch=={public_version(torch_version)}"
    wanted = {"requirements": list(requirements), "torch": torch_pin, "pip_args": list(pip_args)}
    marker = env_dir / MARKER
    if python.exists() and marker.is_file() and json.loads(marker.read_text()).get("wanted") == wanted:
        if subprocess.run([str(python), "-c", _probe(probe)], capture_output=True, text=True).returncode == 0:
            log(f"{label}: reusing {env_dir}")
            return python
        log(f"{label}: {env_dir} no longer imports {', '.join(probe)}; reinstalling")
    env_dir.mkdir(parents=True, exist_ok=True)
    install_log = env_dir / "install.log"
    log(f"{label}: installing {' '.join(requirements)} with {torch_pin} into {env_dir} (log: {install_log}); "
        "this takes a few minutes the first time")
    if not python.exists():
        _run("creating the venv", [sys.executable, "-m", "venv", str(env_dir)], install_log, timeout=300)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *pip_args]
    # torch alone first: the pinned version comes from the configured find-links/index (a CPU build here);
    # then the rest with the same pin, so pip cannot swap torch for another build
    _run(f"installing {torch_pin}", [*pip, torch_pin], install_log, timeout=3600)
    _run(f"installing {' '.join(requirements)}", [*pip, *requirements, torch_pin], install_log, timeout=3600)
    versions = _run(f"importing {', '.join(probe)} in the new env", [str(python), "-c", _probe(probe)], install_log,
                    timeout=600)
    marker.write_text(json.dumps({"wanted": wanted, "installed": json.loads(versions.strip().splitlines()[-1])}))
    return python


def run_worker(python: Path, worker: Path, worker_args: list[str], out_dir: Path, threads: int,
               label: str = "worker", timeout: float | None = None) -> dict:
    """Run a worker script in the env; its <out_dir>/result.json, or BenchEnvError with the output's tail."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)  # nothing of our env may leak into theirs
    cmd = [str(python), str(worker), *worker_args, "--threads", str(threads), "--out", str(out_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BenchEnvError(f"{label} did not finish in {timeout:.0f} s: {' '.join(cmd)}") from e
    (out_dir / "worker.log").write_text(proc.stdout + "\n" + proc.stderr, encoding="utf-8")
    if proc.returncode != 0 or not (out_dir / "result.json").is_file():
        raise BenchEnvError(
            f"{label} failed (exit {proc.returncode}): {' '.join(cmd)}\nlast lines (full log: "
            f"{out_dir / 'worker.log'}):\n{_tail(proc.stdout + chr(10) + proc.stderr)}")
    return json.loads((out_dir / "result.json").read_text())
