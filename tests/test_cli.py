"""The console scripts' contract for bad input: one line on stderr, exit code 2, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "argv, says",
    [
        (["botter-backtest"], "run_dir has no value: give it on the command line (run_dir=...)"),
        (["botter-train", "model=nope"], "model=nope is not an option of model; options: jkx20, seed, small"),
        (["botter-walkforward", "walkforward=nope"],
         "walkforward=nope is not an option of walkforward; options: anchored, rolling"),
        (["botter-runs"], "path has no value: give it on the command line (path=...)"),
        (["botter-runs", "path=nowhere"], "path=nowhere is not a folder"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, argv, says):
    done = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # no run folder for a run that never started
