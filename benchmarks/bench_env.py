"""llm-compressor in a throwaway venv of its own (it pins an older transformers than ours), for bench_pruning.py.

`ensure_env` creates the venv with `python -m venv` and pip-installs torch (pinned to our version, so pip's
configured find-links / index give the same CPU build instead of a CUDA one from PyPI) and then llm-compressor with
that torch pin, letting pip resolve the rest (transformers, compressed-tensors, ...). A marker file records what
was installed; an env whose marker matches and whose interpreter imports llmcompressor is reused as it is.
Every failure raises LLMCompressorEnvError saying which step failed, the command, and the tail of its output.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MARKER = ".sparsetune-bench-env.json"
WORKER = Path(__file__).resolve().parent / "llmcompressor_worker.py"


class LLMCompressorEnvError(RuntimeError):
    """llm-compressor could not be installed or run; the message says which step and why."""


def default_env_dir() -> Path:
    cache = os.environ.get("SPARSETUNE_CACHE") or str(Path.home() / ".cache" / "sparsetune")
    return Path(cache).expanduser() / "llmcompressor-venv"


def public_version(version: str) -> str:
    """'2.13.0+cpu' -> '2.13.0': the pin matches the local CPU wheel and the PyPI release alike."""
    return version.split("+", 1)[0]


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(step: str, cmd: list[str], log: Path, timeout: float | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise LLMCompressorEnvError(f"{step}: `{' '.join(cmd)}` did not finish in {timeout:.0f} s") from e
    except OSError as e:
        raise LLMCompressorEnvError(f"{step}: `{' '.join(cmd)}` could not start: {e}") from e
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}\n")
    if proc.returncode != 0:
        raise LLMCompressorEnvError(
            f"{step} failed: `{' '.join(cmd)}` exited {proc.returncode} (full log: {log}); last lines:\n"
            + _tail(proc.stdout + "\n" + proc.stderr))
    return proc.stdout


def env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def ensure_env(env_dir: Path, torch_version: str, requirement: str = "llmcompressor", pip_args: list[str] = (),
               log=print) -> Path:
    """The venv's python, with llm-compressor importable; creates or repairs the env when needed."""
    env_dir = Path(env_dir).expanduser().resolve()
    python = env_python(env_dir)
    torch_pin = f"torch=={public_version(torch_version)}"
    wanted = {"requirement": requirement, "torch": torch_pin, "pip_args": list(pip_args)}
    marker = env_dir / MARKER
    if python.exists() and marker.is_file() and json.loads(marker.read_text()).get("wanted") == wanted:
        probe = subprocess.run([str(python), "-c", "import llmcompressor"], capture_output=True, text=True)
        if probe.returncode == 0:
            log(f"llm-compressor env: reusing {env_dir}")
            return python
        log(f"llm-compressor env: {env_dir} no longer imports llmcompressor; reinstalling")
    env_dir.mkdir(parents=True, exist_ok=True)
    install_log = env_dir / "install.log"
    log(f"llm-compressor env: installing `{requirement}` with {torch_pin} into {env_dir} (log: {install_log}); "
        "this takes a few minutes the first time")
    if not python.exists():
        _run("creating the venv", [sys.executable, "-m", "venv", str(env_dir)], install_log, timeout=300)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *pip_args]
    # torch alone first: the pinned version comes from the configured find-links/index (a CPU build here);
    # then llm-compressor with the same pin, so pip cannot swap torch for another build
    _run(f"installing {torch_pin}", [*pip, torch_pin], install_log, timeout=3600)
    _run(f"installing {requirement}", [*pip, requirement, torch_pin], install_log, timeout=3600)
    versions = _run("importing llmcompressor in the new env", [str(python), "-c", (
        "import json, llmcompressor, torch, transformers; print(json.dumps({'llmcompressor': llmcompressor.__version__, "
        "'torch': torch.__version__, 'transformers': transformers.__version__}))")], install_log, timeout=600)
    marker.write_text(json.dumps({"wanted": wanted, "installed": json.loads(versions.strip().splitlines()[-1])}))
    return python


def run_worker(python: Path, worker_args: list[str], out_dir: Path, threads: int, timeout: float | None = None) -> dict:
    """Run llmcompressor_worker.py in the env; its result.json, or LLMCompressorEnvError with the output's tail."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)  # nothing of our env may leak into theirs
    cmd = [str(python), str(WORKER), *worker_args, "--threads", str(threads), "--out", str(out_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise LLMCompressorEnvError(f"llm-compressor worker did not finish in {timeout:.0f} s: {' '.join(cmd)}") from e
    (out_dir / "worker.log").write_text(proc.stdout + "\n" + proc.stderr, encoding="utf-8")
    if proc.returncode != 0 or not (out_dir / "result.json").is_file():
        raise LLMCompressorEnvError(
            f"llm-compressor run failed (exit {proc.returncode}): {' '.join(cmd)}\nlast lines (full log: "
            f"{out_dir / 'worker.log'}):\n{_tail(proc.stdout + chr(10) + proc.stderr)}")
    return json.loads((out_dir / "result.json").read_text())
