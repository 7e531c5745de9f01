"""The packaged configs are found from the clone (editable install) and from a built wheel."""

import os
import shutil
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

import botter.configs
import pytest

from botter.config import compose

ROOT = Path(__file__).resolve().parents[1]


def yaml_names(folder, prefix=""):
    for entry in folder.iterdir():
        if entry.is_dir():
            yield from yaml_names(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".yaml"):
            yield prefix + entry.name


def test_editable_install_finds_every_config_of_the_clone():
    shipped = {p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").rglob("*.yaml")}
    found = set(yaml_names(files(botter.configs)))
    assert {"shape.yaml", "model/jkx20.yaml", "render/ohlc.yaml"} <= shipped
    assert found == shipped
    assert compose("shape", ["model=jkx20"]).model.layers[0].out_channels == 64


@pytest.mark.slow
def test_wheel_ships_the_configs_and_botter_shape_runs_from_it(tmp_path):
    # Build from a copy so that the build leaves nothing in the clone (build/, egg-info).
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("botter", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp_path / "dist")],
        check=True,
        cwd=tmp_path,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("botter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # Every config and sample of the tree is in the wheel (a new config group must be listed in pyproject).
    tree = {f"botter/configs/{p.relative_to(ROOT / 'configs').as_posix()}" for p in (ROOT / "configs").rglob("*.yaml")}
    tree |= {f"botter/data/samples/{p.name}" for p in (ROOT / "botter" / "data" / "samples").glob("*.csv")}
    assert len(tree) > 20 and tree <= set(names)

    target = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, timeout=300
    )
    # The wheel's botter comes first on the path; the editable install's finder only answers after it.
    script = (
        "import sys, botter.configs; print(botter.configs.__file__); "
        "sys.argv = ['botter-shape', 'model=jkx20']; from botter.cli.shape import main; main()"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == str(target / "botter" / "configs" / "__init__.py")
    assert lines[-1] == "Linear in_features = 256 x 3 x 60 = 46080"
