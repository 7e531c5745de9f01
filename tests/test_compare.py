"""botter-runs: run folders side by side, sorted by any metric; folders that are not complete runs skipped."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from botter import runs
from botter.cli.runs import runs as compare_runs
from botter.config import compose
from botter.errors import BotterError


def fake_run(path, lr, accuracy, sharpe):
    """A complete run folder as botter-train writes it, with metrics chosen by hand."""
    cfg = OmegaConf.to_container(compose("train", [f"trainer.lr={lr}"]), resolve=True)
    runs.start(path, cfg)
    interval = {"value": accuracy, "low": accuracy - 0.02, "high": accuracy + 0.02, "baseline": "majority",
                "baseline_value": 0.5, "difference": accuracy - 0.5, "difference_low": accuracy - 0.53,
                "difference_high": accuracy - 0.47, "verdict": "better" if accuracy > 0.53 else "not distinguishable"}
    metrics = {"test": {"accuracy": accuracy, "balanced_accuracy": accuracy, "roc_auc": accuracy, "log_loss": 0.69},
               "intervals": {"accuracy": interval, "roc_auc": interval,
                             "sharpe": {**interval, "value": sharpe, "low": sharpe - 1, "high": sharpe + 1}},
               "backtest": {"Return [%]": sharpe, "Buy & Hold Return [%]": 1.0, "# Trades": 12.0}}
    runs.finish(path, predictions=pd.DataFrame({"time": [], "symbol": []}), metrics=metrics, symbols=["ETH/BTC"],
                timeframe="5m", periods={})


def test_runs_side_by_side_sorted_skipping_what_is_not_a_complete_run(tmp_path, tiny_run, capsys):
    shutil.copytree(tiny_run, tmp_path / "real")
    fake_run(tmp_path / "sweep" / "0", 1e-3, 0.52, 2.0)
    fake_run(tmp_path / "sweep" / "1", 3e-4, 0.60, -1.0)
    runs.start(tmp_path / "sweep" / "2", {"trainer": {"lr": 1e-4}})  # killed: still running
    (tmp_path / "failed" / ".hydra").mkdir(parents=True)  # a Hydra job that failed before its run began
    text = compare_runs(compose("runs", [f"path={tmp_path}"]))
    assert text == capsys.readouterr().out.rstrip("\n")
    assert "3 run(s) under" in text and "skipped 2 folder(s) that are not complete runs" in text
    table = pd.read_csv(tmp_path / "runs.csv")
    assert table["run"].tolist() == ["sweep/1", "real", "sweep/0"]  # by accuracy, best first (real: 0.551)
    assert "trainer.lr" in table and "data.symbols" in table  # what differs; not what is equal
    assert "trainer.weight_decay" not in table
    assert table.loc[0, "accuracy_low"] == pytest.approx(0.58) and table.loc[0, "sharpe"] == -1.0
    real = table[table["run"] == "real"].iloc[0]
    assert real["accuracy_low"] < real["accuracy"] < real["accuracy_high"]  # a real run carries intervals
    assert "0.6000 [0.5800, 0.6200]" in text and "+0.1000 [+0.0700, +0.1300]" in text
    # More than three differing values: a table of their own, one column per run.
    assert "config values that differ" in text and "\ntrainer.lr " in text
    assert (tmp_path / "runs.png").stat().st_size > 5000
    by_sharpe = compare_runs(compose("runs", [f"path={tmp_path}", "sort=sharpe", "ascending=true",
                                              f"out_dir={tmp_path / 'out'}"]))
    sharpe = pd.read_csv(tmp_path / "out" / "runs.csv")["sharpe"]  # the real run's test day is too short: NaN, last
    assert sharpe.tolist()[:2] == [-1.0, 2.0] and sharpe.isna().tolist() == [False, False, True]
    assert "sorted by sharpe (ascending)" in by_sharpe
    with pytest.raises(BotterError, match="sort='bogus' is not a column: use one of run, kind, "):
        compare_runs(compose("runs", [f"path={tmp_path}", "sort=bogus"]))
    with pytest.raises(BotterError, match="no complete run folder under .*skipped 1 folder"):
        compare_runs(compose("runs", [f"path={tmp_path / 'failed'}"]))


@pytest.mark.slow
def test_a_walkforward_that_fails_on_a_bad_span_is_one_line_and_leaves_no_run_for_botter_runs(tmp_path):
    bin_dir = Path(sys.executable).parent
    done = subprocess.run([str(bin_dir / "botter-walkforward"), "data=planted", "data.params.episodes=100",
                           "walkforward.train=7x"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("error: walkforward.train=7x is not a span: give candles (an int >= 1), a share "
                                   "of the decision times (20%, or 0.2) or a duration like 7d, 12h, 30m, 2w")
    listed = subprocess.run([str(bin_dir / "botter-runs"), "path=outputs"], cwd=tmp_path, capture_output=True,
                            text=True, check=False)
    assert listed.returncode == 2 and listed.stderr.strip() == "error: no complete run folder under outputs"
    assert not any((tmp_path / "outputs" / "walkforward").iterdir())  # its run folder went with the refusal


def damaged_runs(root) -> dict:
    """Beside one good run under `root`, one folder per way a run folder is found damaged: {folder: what
    its reason says}."""
    import json

    fake_run(root / "good", 1e-3, 0.52, 2.0)
    damage = {
        "run_json_1": ("run.json", "1", "run.json"),
        "no_config": ("config.yaml", None, "config.yaml"),
        "metrics_list": ("metrics.json", "[]", "metrics.json is damaged (it is not a mapping)"),
        "intervals_null": ("metrics.json", json.dumps({"intervals": None}), "its intervals is not a mapping"),
        "metrics_invalid": ("metrics.json", "{not json", "metrics.json is not valid JSON"),
    }
    for name, (file, text, _) in damage.items():
        fake_run(root / name, 1e-3, 0.5, 0.0)
        if text is None:
            (root / name / file).unlink()
        else:
            (root / name / file).write_text(text)
    fake_run(root / "no_kind", 1e-3, 0.5, 0.0)
    meta = json.loads((root / "no_kind" / "run.json").read_text())
    del meta["kind"]
    (root / "no_kind" / "run.json").write_text(json.dumps(meta))
    return {**{name: says for name, (*_, says) in damage.items()}, "no_kind": "its kind is None"}


def test_damaged_run_folders_are_skipped_each_with_why(tmp_path):
    damaged = damaged_runs(tmp_path)
    text = compare_runs(compose("runs", [f"path={tmp_path}"]))
    assert "1 run(s) under" in text and f"skipped {len(damaged)} folder(s) that are not complete runs:" in text
    for name, says in damaged.items():
        assert re.search(rf"\n  {re.escape(str(tmp_path / name))}: .*{re.escape(says)}", text), name
    assert pd.read_csv(tmp_path / "runs.csv")["run"].tolist() == ["good"]


def test_botter_runs_writes_into_a_folder_never_into_a_run_folder(tmp_path):
    fake_run(tmp_path / "run", 1e-3, 0.52, 2.0)
    with pytest.raises(BotterError, match=r"path=.*/run is a run folder: .* give out_dir=<a folder>"):
        compare_runs(compose("runs", [f"path={tmp_path / 'run'}"]))
    assert not (tmp_path / "run" / "runs.csv").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(BotterError, match="out_dir=.*/file is a file: give a folder"):
        compare_runs(compose("runs", [f"path={tmp_path}", f"out_dir={tmp_path / 'file'}"]))
    compare_runs(compose("runs", [f"path={tmp_path / 'run'}", f"out_dir={tmp_path / 'out'}"]))
    assert (tmp_path / "out" / "runs.csv").exists()
