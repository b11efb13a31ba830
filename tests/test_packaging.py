"""A real package: the wheel ships the Hydra configs (top-level conf/ -> sparsetune/conf) and the `sparsetune` console
script, the app finds its configs from an unpacked wheel alone, pyproject.toml declares ranges, and requirements.lock
pins every declared dependency inside its range, without torch's CUDA runtime."""
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel` of a copy of the sources (a build in the checkout would leave build/ behind, and stale files
    there would end up in later wheels)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("sparsetune", "conf"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("sparsetune-*.whl")
    return whl


def test_the_wheel_ships_every_config_and_module(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for yaml in sorted((ROOT / "conf").rglob("*.yaml")):
            inside = f"sparsetune/conf/{yaml.relative_to(ROOT / 'conf').as_posix()}"
            assert inside in names, f"{inside} missing from the wheel"
            assert z.read(inside) == yaml.read_bytes()
        for f in sorted((ROOT / "sparsetune").rglob("*")):
            if f.suffix in (".py", ".yaml") and "__pycache__" not in f.parts:
                assert f"sparsetune/{f.relative_to(ROOT / 'sparsetune').as_posix()}" in names
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = z.read(entry_points).decode()
    assert re.search(r"^\[console_scripts\]\s*\nsparsetune = sparsetune\.cli:app$", scripts, re.M), scripts
    assert not any(n.startswith(("conf/", "tests/", "scripts/")) for n in names)


def test_the_app_finds_its_configs_in_an_unpacked_wheel_alone(wheel, tmp_path):
    """`python -m sparsetune --cfg job ...` (what the console script runs) from a directory with no checkout: the
    configs come from the wheel's sparsetune/conf, and the composed job is the one asked for."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = "import sparsetune.cli as c; print(c.__file__); print(c.config_dir())"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path), **OFFLINE}
    where = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True,
                           timeout=60)
    assert where.returncode == 0, where.stderr[-2000:]
    module, conf = where.stdout.split()
    assert Path(module).is_relative_to(site) and Path(conf) == site / "sparsetune" / "conf"

    proc = subprocess.run([sys.executable, "-m", "sparsetune", "--cfg", "job", "model=tiny-bert", "debug=fast",
                           "method=magnitude"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"^  name: magnitude$", proc.stdout, re.M) and "tiny-bert" in proc.stdout
    assert not (elsewhere / "outputs").exists()  # --cfg composes only

    bad = subprocess.run([sys.executable, "-m", "sparsetune", "method=nope"], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "pst" in bad.stderr


def test_the_checkout_uses_its_top_level_conf():
    from sparsetune.cli import config_dir

    assert config_dir() == ROOT / "conf"


def declared() -> tuple[dict, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    return project, reqs


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_dependencies_are_ranges_and_the_lock_pins_each_inside_its_range():
    project, reqs = declared()
    pins = locked()
    for req in reqs:
        assert not any(s.operator == "==" for s in req.specifier), f"{req}: a range, not a pin (the lock pins)"
        assert any(s.operator == "<" for s in req.specifier), f"{req}: no upper bound"
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is declared but not in requirements.lock"
        assert req.specifier.contains(pins[name]), f"requirements.lock pins {req.name}=={pins[name]}, outside {req}"
    assert pins["torch"] == "2.13.0"  # make setup's exact CPU torch (Makefile)
    assert "evaluate" not in {r.name for r in reqs}  # nothing imports it (lm-eval still brings it in)
    assert project["scripts"]["sparsetune"] == "sparsetune.cli:app"


def test_the_lock_has_no_cuda_packages_and_says_how_it_was_made():
    pins = locked()
    assert not [n for n in pins if n.startswith(("nvidia", "cuda", "triton"))]
    header = (ROOT / "requirements.lock").read_text().splitlines()[1].lstrip("# ").strip()
    makefile = (ROOT / "Makefile").read_text()
    lock_cmd = re.search(r"^LOCK_CMD := (.*?[^\\])$", makefile, re.M | re.S).group(1)
    assert header == " ".join(lock_cmd.replace("\\\n", " ").split())  # make lock runs the command the header names
    assert (ROOT / "lock-excludes.txt").is_file() and "--excludes lock-excludes.txt" in header
