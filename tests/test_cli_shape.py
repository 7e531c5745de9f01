"""botter-shape: golden tables (in process) and the acceptance runs of the installed console script."""

import subprocess
import sys
from pathlib import Path

import pytest

from botter.cli.shape import shape as _shape
from botter.config import compose

GOLDEN = Path(__file__).parent / "golden"
BOTTER_SHAPE = Path(sys.executable).with_name("botter-shape")
OPTIONS_STACK = (
    "model.layers=[{type: Conv2d, out_channels: 4, kernel_size: 4, padding: same, dilation: 2}, "
    "{type: AvgPool2d, kernel_size: 3, stride: 2, padding: 1, ceil_mode: true}, "
    "{type: AdaptiveMaxPool2d, output_size: [null, 5]}]"
)


@pytest.mark.parametrize(
    "golden, overrides",
    [
        (
            "seed_mplfinance_240x320.txt",
            ["model=seed", "render=mplfinance", "render.height=240", "render.width=320"],
        ),
        ("jkx20.txt", ["model=jkx20"]),
        ("small.txt", []),
        ("options.txt", [OPTIONS_STACK]),
    ],
)
def test_printed_table_matches_golden(golden, overrides, capsys):
    _shape(compose("shape", overrides))
    assert capsys.readouterr().out == (GOLDEN / golden).read_text()


def run(*overrides, cwd):
    return subprocess.run(
        [str(BOTTER_SHAPE), *overrides], check=False, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_seed_acceptance(tmp_path):
    done = run("model=seed", "render=mplfinance", "render.height=240", "render.width=320", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "height: 240 -> 236 -> 118 -> 114 -> 57" in done.stdout
    assert "width: 320 -> 316 -> 158 -> 154 -> 77" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "Linear in_features = 32 x 57 x 77 = 140448"
    assert list(tmp_path.iterdir()) == []  # no run folder, no saved config


def test_jkx20_acceptance(tmp_path):
    done = run("model=jkx20", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "total parameters: 708,866" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "Linear in_features = 256 x 3 x 60 = 46080"


def test_stack_too_deep_exits_2_with_one_line(tmp_path):
    done = run("model=seed", "render.height=12", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: layer 3 (Conv2d): height 4 -> 0 < 1")
    assert len(done.stderr.strip().splitlines()) == 1
