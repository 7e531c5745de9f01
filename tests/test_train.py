import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

import botter.train as train_mod
from botter import dataset, inference, runs
from botter.cli.train import train as _train
from botter.config import compose
from botter.data import load
from botter.errors import BotterError
from botter.evaluate import baselines, metrics

# A small planted run on small images (1 x 32 x 30): 600 episodes -> 420 train / 90 val / 90 test windows.
PLANTED = ["data=planted", "data.params.episodes=600", "data.window=10", "render.height=32", "trainer.batch_size=64",
           "trainer.progress=false", "trainer.device=cpu"]  # exact-equality checks need CPU arithmetic


def _planted_run(tmp_path, extra=()):
    cfg = compose("train", [*PLANTED, f"paths.data_dir={tmp_path / 'data'}", *extra])
    return _train(cfg, out_dir=tmp_path / "run")


def test_metrics_by_hand():
    labels = np.array([0, 0, 1, 1, 1])
    p_up = np.array([0.1, 0.6, 0.35, 0.8, 0.8])
    m = metrics(labels, np.stack([1 - p_up, p_up], 1))
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # Pairs (up, down) ranked right: 0.35 beats 0.1 only; 0.8 and 0.8 beat both: 5 of 6.
    assert m["roc_auc"] == pytest.approx(5 / 6)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.35, 0.8, 0.8])))
    tie = metrics(np.array([0, 1]), np.array([[0.5, 0.5], [0.5, 0.5]]))
    assert tie["roc_auc"] == 0.5
    three = metrics(np.array([0, 1, 2]), np.eye(3))
    assert three["accuracy"] == 1 and three["roc_auc"] == 1 and three["confusion_matrix"] == np.eye(3).tolist()


def test_baselines_by_hand():
    class Windows:  # what baselines reads of botter.dataset.Windows
        def __init__(self, labels, past):
            self.labels, self.past = np.array(labels), np.array(past)

        def __len__(self):
            return len(self.labels)

        def past_returns(self):
            return self.past

    windows = Windows

    train = windows([1, 1, 1, 0], [0.1, 0.2, -0.1, -0.2])
    test = windows([1, 0, 0], [0.3, -0.3, 0.1])
    b = baselines(train, test, classes=2)
    assert b["majority"]["confusion_matrix"] == [[0, 2], [0, 1]]
    assert b["majority"]["log_loss"] == pytest.approx(-np.mean(np.log([0.75, 0.25, 0.25])))
    sign = b["previous_return_sign"]
    assert sign["confusion_matrix"] == [[1, 1], [0, 1]]
    # Train up-shares with add-one smoothing: after an up window (2+1)/(2+2), after a down one (1+1)/(2+2).
    assert sign["log_loss"] == pytest.approx(-np.mean(np.log([3 / 4, 1 / 2, 1 / 4])))


@pytest.mark.slow
def test_planted_run_learns_and_writes_the_run_folder(tmp_path):
    result = _planted_run(tmp_path, ["trainer.max_epochs=3"])
    assert result["test"]["accuracy"] >= 0.95
    assert result["baselines"]["majority"]["accuracy"] < 0.7
    for metric in ("accuracy", "roc_auc"):  # 90 test windows are enough to tell it from chance
        assert result["intervals"][metric]["low"] > 0.5 and result["intervals"][metric]["verdict"] == "better"
    assert result["backtest"]["# Trades"] >= 0 and "Sharpe Ratio" in result["backtest"]
    run = tmp_path / "run"
    for name in ("config.yaml", "run.json", "model.pt", "last.pt", "best.pt", "metrics.csv", "metrics.json",
                 "curves.png", "predictions.parquet"):
        assert (run / name).exists(), name
    assert json.loads((run / "metrics.json").read_text())["test"] == result["test"]
    opened = runs.open_run(run)
    assert opened.config["data"]["source"] == "planted" and opened.kind == "train"
    history = pd.read_csv(run / "metrics.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    preds = opened.predictions()
    assert list(preds.columns) == ["time", "symbol", "p_down", "p_up", "label"]
    # 90 test episodes: one labelled window each, and the horizon + 1 windows after it decided on too.
    assert str(preds["time"].dt.tz) == "UTC" and preds["label"].notna().sum() == 90 and len(preds) == 90 * 7
    predictor = inference.load(opened)
    assert predictor.info["window"] == 10 and predictor.classes == 2 and predictor.info["render"]["name"] == "ohlc"
    # The saved model reproduces the saved predictions exactly from freshly drawn test windows.
    cfg = OmegaConf.to_container(compose("train", PLANTED), resolve=True)
    d = cfg["data"]
    again = predictor.predict(load(d["source"], d["symbols"], d["timeframe"], **d["params"]))
    again = again[again["time"] >= preds["time"].min()].reset_index(drop=True)
    pd.testing.assert_frame_equal(again, preds, check_exact=True)
    spans = opened.periods["PLANTED/BTC"]
    assert spans["train"][1] <= spans["val"][0] and spans["val"][1] <= spans["test"][0]


@pytest.mark.slow
def test_shuffled_labels_score_chance(tmp_path):
    cfg = OmegaConf.to_container(compose("train", [*PLANTED, "data.params.episodes=1000"]), resolve=True)
    d, r = cfg["data"], cfg["render"]
    w = dataset.build(load(d["source"], d["symbols"], d["timeframe"], **d["params"]), window=10, horizon=5,
                      classes=2, timeframe="5m", render=r, progress=False).labelled()
    w.labels = np.random.default_rng(1).permutation(w.labels)
    a = dataset.split(w.times, w.exits(5))
    train, val, test = (w.take(a == i) for i in range(3))
    fitted = train_mod.fit(train, val, model_kwargs={**cfg["model"], "input_hw": [r["height"], r["width"]]},
                           out_dir=tmp_path, **{**cfg["trainer"], "max_epochs": 3})
    result = metrics(test.labels.astype(int), inference.probabilities([fitted.model], test))
    chance = np.bincount(test.labels).max() / len(test)
    # 150 test windows: one standard deviation of a coin's accuracy is 0.04.
    assert result["accuracy"] <= chance + 0.1
    assert abs(result["roc_auc"] - 0.5) < 0.15


@pytest.mark.slow
def test_resume_continues_a_killed_run_exactly(tmp_path, monkeypatch):
    full = _planted_run(tmp_path / "a", ["trainer.max_epochs=2"])
    real_input, calls = train_mod.as_input, [0]

    def dies_in_epoch_two(*a, **k):
        calls[0] += 1
        if calls[0] > 10:  # 420 / 64 -> 7 steps per epoch: dies in epoch 2
            raise KeyboardInterrupt
        return real_input(*a, **k)

    monkeypatch.setattr(train_mod, "as_input", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        _planted_run(tmp_path / "b", ["trainer.max_epochs=2"])
    assert pd.read_csv(tmp_path / "b" / "run" / "metrics.csv")["epoch"].tolist() == [1]
    assert not (tmp_path / "b" / "run" / "model.pt").exists()
    with pytest.raises(BotterError, match="did not finish"):
        runs.open_run(tmp_path / "b" / "run")  # a killed run never looks like a finished one
    monkeypatch.setattr(train_mod, "as_input", real_input)
    resumed = _planted_run(tmp_path / "b", ["trainer.max_epochs=2", "trainer.resume=true"])
    a, b = (pd.read_csv(tmp_path / x / "run" / "metrics.csv") for x in "ab")
    timings = ["seconds", "train_seconds"]
    pd.testing.assert_frame_equal(a.drop(columns=timings), b.drop(columns=timings))
    assert resumed["test"] == full["test"]


def test_bad_trainer_settings_raise_botter_error(tmp_path):
    with pytest.raises(BotterError, match="schedule"):
        _planted_run(tmp_path, ["trainer.schedule=bogus", "data.params.episodes=100"])
    with pytest.raises(BotterError, match="device"):
        _planted_run(tmp_path, ["trainer.device=nonsense", "data.params.episodes=100"])


def _cli(args, cwd, timeout=240):
    env = {**os.environ, "BOTTER_DATA_DIR": str(cwd / "data")}
    return subprocess.run(args, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_ddp_two_cpu_processes_stop_early_together_and_a_sweep(tmp_path):
    tiny = [*PLANTED, "data.params.episodes=200", "trainer.max_epochs=1", "trainer.batch_size=32"]
    run = tmp_path / "ddp"
    with socket.socket() as s:  # a free port, so parallel runs on one host do not collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Weights that never move (lr 0, no BatchNorm): epoch 2's val loss equals epoch 1's, so with
    # patience 1 every rank must leave the loop after epoch 2 of 5, together, or the run hangs.
    frozen = ["trainer.max_epochs=5", "trainer.patience=1", "trainer.lr=0", "trainer.schedule=constant",
              "trainer.weight_decay=0", "model.layers=[{type:Conv2d,out_channels:4,kernel_size:3},{type:ReLU}]"]
    ddp = _cli([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                "-m", "botter.train", *tiny, *frozen, f"hydra.run.dir={run}"], tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert (run / "model.pt").exists() and pd.read_parquet(run / "predictions.parquet")["label"].notna().sum() == 30
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2]
    sweep = _cli([str(Path(sys.executable).parent / "botter-train"), "-m", "trainer.lr=1e-3,3e-4", *tiny,
                  f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    lrs = sorted(OmegaConf.load(p).trainer.lr for p in (tmp_path / "sweep").glob("*/config.yaml"))
    assert lrs == [3e-4, 1e-3] and len(list((tmp_path / "sweep").glob("*/metrics.json"))) == 2
    # The sweep ends with botter-runs' table of its runs (hydra.callbacks in configs/train.yaml).
    assert f"2 run(s) under {tmp_path / 'sweep'}, sorted by accuracy" in sweep.stdout and "trainer.lr" in sweep.stdout
    assert len(pd.read_csv(tmp_path / "sweep" / "runs.csv")) == 2


def _files(run: Path) -> dict:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


@pytest.mark.slow
def test_resume_refuses_other_settings_before_writing_anything(tmp_path):
    _planted_run(tmp_path, ["trainer.max_epochs=1"])
    run = tmp_path / "run"
    before = _files(run)
    for change, named in (("data.params.episodes=300", "data.params.episodes: checkpoint 600, now 300"),
                          ("model=jkx20", "model.layers"), ("trainer.lr=0.5", "trainer.lr"),
                          ("data.symbols=[OTHER/BTC]", "data.symbols")):
        with pytest.raises(BotterError, match=f"other settings.*{re.escape(named)}"):
            _planted_run(tmp_path, ["trainer.max_epochs=1", "trainer.resume=true", change])
        assert _files(run) == before, change
    # max_epochs may grow: the schedule is rebuilt over the new total and continues.
    _planted_run(tmp_path, ["trainer.max_epochs=2", "trainer.resume=true"])
    assert pd.read_csv(run / "metrics.csv")["epoch"].tolist() == [1, 2]


def test_corrupt_or_crafted_checkpoints_are_one_line_and_never_run(tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    crafted = tmp_path / "model.pt"
    torch.save({"state_dicts": [Payload()]}, crafted)
    with pytest.raises(BotterError, match="not loaded.*could run code"):
        runs.load_checkpoint(crafted)
    assert not marker.exists()
    truncated = tmp_path / "last.pt"
    torch.save({"model": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(BotterError, match="truncated or not a torch file"):
        runs.load_checkpoint(truncated)
    garbage = tmp_path / "best.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(BotterError, match="truncated or not a torch file"):
        runs.load_checkpoint(garbage)


def test_charts_drawn_in_the_step_train_exactly_like_charts_rendered_up_front(tmp_path):
    cfg = OmegaConf.to_container(compose("train", [*PLANTED, "data.params.episodes=300"]), resolve=True)
    d, r = cfg["data"], cfg["render"]
    w = dataset.build(load(d["source"], d["symbols"], d["timeframe"], **d["params"]), window=10, horizon=5,
                      classes=2, timeframe="5m", render=r, progress=False).labelled()
    rendered = dataset.Windows(**{**w.__dict__, "cached": w.images().numpy()})  # the old way: every chart first
    a = dataset.split(w.times, w.exits(5))
    kw = {"model_kwargs": {**cfg["model"], "input_hw": [r["height"], r["width"]]}, "max_epochs": 2,
          "batch_size": 32, "device": "cpu", "progress": False}
    results = []
    for i, windows in enumerate((w, rendered)):
        fitted = train_mod.fit(windows.take(a == 0), windows.take(a == 1), out_dir=tmp_path / str(i), **kw)
        results.append((fitted.history.drop(columns=["seconds", "train_seconds"]),
                        inference.probabilities([fitted.model], windows.take(a == 2))))
    pd.testing.assert_frame_equal(results[0][0], results[1][0], check_exact=True)
    assert np.array_equal(results[0][1], results[1][1])


@pytest.mark.slow
def test_resume_refuses_other_candles_under_the_same_config(tmp_path):
    from botter.data import load_sample, store_path
    from botter.data.store import append_store

    eth = load_sample("ETH/BTC").iloc[:1500]
    for name, candles in (("a", eth), ("b", eth.iloc[:1400])):  # b: the same market, fewer candles
        append_store(store_path(tmp_path / name, "binance", "ETH/BTC", "5m"), candles)
    args = ["data=store", "data.symbols=[ETH/BTC]", "data.timeframe=5m", "trainer.max_epochs=1", "trainer.device=cpu",
            "trainer.progress=false", "model.layers=[{type:Conv2d,out_channels:4,kernel_size:5,stride:2},{type:ReLU}]"]
    train_run = [*args, f"paths.data_dir={tmp_path / 'a'}"]
    _train(compose("train", train_run), out_dir=tmp_path / "run")
    before = _files(tmp_path / "run")
    with pytest.raises(BotterError, match=r"other settings \(candles.ETH/BTC: checkpoint '1500 candles"):
        _train(compose("train", [*args, f"paths.data_dir={tmp_path / 'b'}", "trainer.resume=true"]),
               out_dir=tmp_path / "run")
    assert _files(tmp_path / "run") == before


@pytest.mark.slow
def test_a_refused_resume_from_the_command_line_leaves_the_run_folder_byte_identical(tmp_path):
    run = tmp_path / "run"
    train = [str(Path(sys.executable).parent / "botter-train"), *PLANTED, "data.params.episodes=200",
             "trainer.max_epochs=1", f"hydra.run.dir={run}"]
    first = _cli(train, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads((run / "run.json").read_text())["overrides"] == train[1:-1]  # as .hydra/overrides.yaml held them
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    refused = _cli([*train, "trainer.resume=true", "trainer.lr=0.5"], tmp_path)
    assert refused.returncode == 2 and "other settings (trainer.lr" in refused.stderr, refused.stderr[-3000:]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files
    assert not (run / ".hydra").exists()
