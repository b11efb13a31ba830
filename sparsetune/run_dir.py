"""One run per run directory, and nothing in it destroyed by accident.

- `claimed(run_dir)`: creates the dir and holds an exclusive lock on `<run dir>/.run.lock` for the life of
  the run, so a second process aimed at the same dir is refused (naming the holder's pid).
- `plan(cfg, run_dir, config)`: what an existing dir allows. A dir that holds results.json, checkpoints/ or
  model/ (Hydra's .hydra/ and *.log do not count) is refused unless `resume` (continue; the config must match
  the recorded one up to RESULT_NEUTRAL keys, or `force_resume=true`, which is recorded) or `overwrite=true`
  (the old products are removed, and the new record says so). A completed run asked to resume is returned as
  recorded. A record of a run that failed before its first step (bad input) is no obstacle: the new attempt
  keeps it under previous_attempts.
- `storage_error(exc, path)`: a full disk or an unwritable dir as one line naming the path and the fix.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .distributed import is_main
from .errors import ConfigError

PRODUCTS = ("results.json", "checkpoints", "model", "model-compressed")
LOCK = ".run.lock"

# Keys that may change between the attempts of one run: they decide where things go, how often a checkpoint
# is kept, how fast it runs, and what is logged, never what is computed. Not here (so a change needs
# force_resume): train.logging_steps (it moves the last logged loss, which is metrics.train_loss),
# train.eval_batch_size and evaluation settings (padding and batching move metrics' last bits), anything
# else. hardware.num_threads can change CPU float reductions in the last bit; it is here because resuming on
# another machine must stay possible.
RESULT_NEUTRAL = ("resume", "overwrite", "force_resume", "export", "export_compressed", "objective", "logger", "paths",
                  "hardware.num_threads", "hardware.dataloader_workers", "train.save_steps", "train.save_total_limit")


class RunDirError(ConfigError):
    """The run dir cannot be used as asked (occupied, in use, changed config, unwritable, disk full)."""


# ---- the lock ------------------------------------------------------------------------------------
@contextmanager
def claimed(run_dir: Path):
    """Create run_dir and hold its lock until the block ends (a killed process releases it too). The other ranks
    of a multi-process launch work in rank 0's dir under rank 0's lock."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666) if is_main() else None
    except OSError as e:
        raise storage_error(e, run_dir) or _unwritable(run_dir, e) from None
    if fd is None:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown pid"
            raise RunDirError(f"run dir {run_dir} is in use by another run ({holder}): wait for it to end or choose "
                              "another hydra.run.dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


# ---- what an existing dir allows -----------------------------------------------------------------
@dataclass
class Plan:
    kind: str  # fresh | overwrite | resume | completed
    previous: dict | None = None  # the record found in the dir
    products: list[str] = field(default_factory=list)  # what the dir already held
    changes: list[dict] = field(default_factory=list)  # config differences from the recorded run
    forced: bool = False  # resumed although a change alters the result (force_resume=true)


def products_in(run_dir: Path) -> list[str]:
    return [p for p in PRODUCTS if (run_dir / p).exists()]


def read_results(run_dir: Path) -> dict | None:
    """The dir's record; None when there is none, {"status": "unreadable", ...} when it is not a JSON object."""
    path = run_dir / "results.json"
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return {"status": "unreadable", "error": f"{path}: {e}"}
    return rec if isinstance(rec, dict) else {"status": "unreadable", "error": f"{path}: not a JSON object"}


def check_writable(run_dir: Path) -> None:
    """Create run_dir and write a few KiB into it (a full disk often still creates empty files)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-check.") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise storage_error(e, run_dir) or _unwritable(run_dir, e) from None


def plan(cfg, run_dir: Path, config: dict) -> Plan:
    """Decide from the dir's contents and cfg.resume / overwrite / force_resume; raise RunDirError to refuse.
    Changes nothing on disk (a refused run leaves the dir as it was)."""
    resume, overwrite, force = cfg.get("resume"), bool(cfg.get("overwrite", False)), bool(cfg.get("force_resume", False))
    if overwrite and resume is not None:
        raise RunDirError(f"overwrite=true and resume={resume} contradict each other: choose one")
    found = products_in(run_dir)
    previous = read_results(run_dir)
    status = (previous or {}).get("status", "unrecorded")
    if not found:
        return Plan("fresh")
    if found == ["results.json"] and status == "failed" and previous.get("phase") == "setup":
        return Plan("fresh", previous)  # a run that failed before its first step: retried, kept in previous_attempts
    if overwrite:
        return Plan("overwrite", previous, found)
    if resume is None:
        raise RunDirError(f"run dir {run_dir} already holds {', '.join(found)} of an earlier run (status: {status}): "
                          "continue it with resume=auto, replace it with overwrite=true, or choose another hydra.run.dir")
    recorded = (previous or {}).get("config")
    if not isinstance(recorded, dict):
        if not force:
            raise RunDirError(f"run dir {run_dir} has no readable recorded config to check resume={resume} against: "
                              "add force_resume=true to continue anyway, or overwrite=true")
        return Plan("resume", previous, found, [{"key": "(config)", "recorded": None, "now": "(this run's)",
                                                  "alters_result": True}], forced=True)
    changes = config_changes(recorded, config)
    altering = [c for c in changes if c["alters_result"]]
    if altering and (status == "completed" or not force):
        shown = ", ".join(f"{c['key']}: {c['recorded']!r} -> {c['now']!r}" for c in altering[:5])
        more = f" and {len(altering) - 5} more" if len(altering) > 5 else ""
        fix = ("run it with overwrite=true or in another hydra.run.dir" if status == "completed" else
               "undo the change, add force_resume=true to continue anyway (recorded), or use overwrite=true")
        raise RunDirError(f"resume={resume}: the config differs from the {status} run in {run_dir} in a way that "
                          f"changes the result ({shown}{more}): {fix}")
    if status == "completed":
        return Plan("completed", previous, found, changes)
    return Plan("resume", previous, found, changes, forced=bool(altering))


def config_changes(recorded: dict, now: dict) -> list[dict]:
    old, new = _flatten(recorded), _flatten(now)
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key, _ABSENT) != new.get(key, _ABSENT):
            neutral = any(key == p or key.startswith(p + ".") for p in RESULT_NEUTRAL)
            # a key the schema gained after the run was recorded, at its default: the old behaviour, no change
            added_at_default = key not in old and new[key] == schema_default(key, now)
            out.append({"key": key, "recorded": old.get(key), "now": new.get(key),
                        "alters_result": not (neutral or added_at_default)})
    return out


def schema_default(key: str, config: dict):
    """The schema's default of a dotted config key (e.g. train.select), or _ABSENT."""
    from dataclasses import MISSING, fields

    from .method_schemas import METHOD_SCHEMAS
    from .validate import GROUP_SCHEMAS

    group, _, rest = key.partition(".")
    schema = METHOD_SCHEMAS.get(str(config.get("method", {}).get("name"))) if group == "method" else GROUP_SCHEMAS.get(group)
    for part in rest.split(".") if rest else ():
        field = next((f for f in fields(schema) if f.name == part), None) if schema else None
        if field is None:
            return _ABSENT
        if field.default is not MISSING:
            return field.default
        schema = field.default_factory if isinstance(field.default_factory, type) else None
        if schema is None:
            return field.default_factory() if field.default_factory is not MISSING else _ABSENT
    return _ABSENT


_ABSENT = object()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def remove_products(run_dir: Path, names: list[str]) -> None:
    for name in names:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


# ---- the record's account of this dir's history ----------------------------------------------------
def record_bad_input(cfg, run_dir: Path, error: Exception) -> None:
    """Bad input found before run() (the CLI's preflight): the record run() would have written (status failed,
    phase setup), so a sweep's summary sees the job. Never over an earlier run's products; best effort."""
    from omegaconf import OmegaConf

    from .records import write_results

    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # the bad input may be an interpolation
        config = OmegaConf.to_container(cfg, resolve=False)
    try:
        with claimed(run_dir):
            p = plan(cfg, run_dir, config)
            if p.kind == "fresh":
                rec = start_record(p, run_dir, config)
                rec.update(status="failed", phase="setup", ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           error=f"{type(error).__name__}: {error}")
                write_results(run_dir, rec)
    except (OSError, ConfigError):
        pass


def process_info() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": list(sys.argv)}


def start_record(p: Plan, run_dir: Path, config: dict) -> dict:
    """The `status: running` record written before any work."""
    rec = {"status": "running", "config": config, "run_dir": str(run_dir), "process": process_info()}
    prev = p.previous or {}
    if p.kind == "overwrite":
        rec["overwrote"] = {"removed": p.products, "previous_status": prev.get("status"),
                            "previous_process": prev.get("process")}
    elif prev:  # resumed, or retried after a failure before the first step
        rec["previous_attempts"] = [*prev.get("previous_attempts", []), _attempt(prev)]
    if p.changes:
        rec["resume_config_changes"] = p.changes
        rec["resume_forced"] = p.forced
    return rec


def _attempt(prev: dict) -> dict:
    keep = ("status", "process", "ended", "last_step", "last_checkpoint", "interrupted_by", "phase", "diverged_at_step")
    out = {k: prev[k] for k in keep if k in prev}
    if prev.get("error"):
        out["error"] = str(prev["error"]).splitlines()[0][:500]
    if prev.get("status") == "running":
        out["note"] = "its process ended without a final record (killed, e.g. kill -9 or out of memory)"
    return out


# ---- storage faults --------------------------------------------------------------------------------
FULL = (errno.ENOSPC, errno.EDQUOT)
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST)


def storage_error(exc: BaseException, run_dir: Path) -> RunDirError | None:
    """A full disk, or a run dir that cannot be written, behind `exc` (anywhere in its chain), as one line;
    else None."""
    for e in _chain(exc):
        where = Path(e.filename) if isinstance(e, OSError) and e.filename else run_dir
        if _says_full(e):
            return RunDirError(f"no space left on the disk holding {where}: free some space (or point hydra.run.dir / "
                               "paths.output_root at another disk) and run again; resume=auto continues a started run")
        if isinstance(e, OSError) and e.errno in UNWRITABLE and _on_the_way(where, run_dir):
            return _unwritable(where, e)
    return None


def disk_full(exc: BaseException, path: Path) -> bool:
    """Whether a failed write under `path` ran out of space. Call it before cleaning up (which frees space):
    torch's writer reports a short write without an errno ("file write failed", "unexpected pos")."""
    if any(_says_full(e) for e in _chain(exc)):
        return True
    text = str(exc)
    return ("file write failed" in text or "unexpected pos" in text) and _nearly_full(path)


def no_space(path: Path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def write_dir_atomically(partial: Path, final: Path, write: Callable[[Path], dict]) -> dict:
    """write(partial) fills a temp dir that becomes `final` only once it returns, so `final` is always complete
    (an earlier attempt's is replaced); a write that ran out of space is one ENOSPC error naming `final`."""
    shutil.rmtree(partial, ignore_errors=True)
    try:
        record = write(partial)
    except BaseException as e:
        full = disk_full(e, partial)  # asked before the cleanup frees space
        shutil.rmtree(partial, ignore_errors=True)
        if full:
            raise no_space(final) from e
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return record


def _chain(exc: BaseException):
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _says_full(e: BaseException) -> bool:
    text = str(e)
    return getattr(e, "errno", None) in FULL or "No space left on device" in text or "Disk quota exceeded" in text


def _on_the_way(path: Path, run_dir: Path) -> bool:
    """path is the run dir, one of its parents, or inside it (not, say, an unreadable model dir)."""
    p, r = Path(os.path.abspath(path)), Path(os.path.abspath(run_dir))
    return p == r or p in r.parents or r in p.parents


def _unwritable(path: Path, e: OSError) -> RunDirError:
    return RunDirError(f"cannot write {path} ({e.strerror or e}): choose a writable hydra.run.dir or paths.output_root")


def _nearly_full(path: Path) -> bool:
    path = next((p for p in (path, *path.parents) if p.exists()), path)
    try:
        return shutil.disk_usage(path).free < 64 * 2**20
    except OSError:
        return False
