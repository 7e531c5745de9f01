import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

import botter.train as train_mod
from botter import dataset
from botter.cli.train import train as _train
from botter.config import compose
from botter.data import load
from botter.errors import BotterError
from botter.evaluate import baselines, metrics
from botter.train import load_model, predict

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
    def windows(labels, past):
        n = len(labels)
        return dataset.Windows(np.zeros((n, 1, 1, 1), np.uint8), np.array(labels), np.zeros(n), np.array(past),
                               np.zeros(n, "datetime64[ns]"), np.array(["s"] * n, object))

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
    run = tmp_path / "run"
    for name in ("config.yaml", "model.pt", "last.pt", "best.pt", "metrics.csv", "metrics.json", "curves.png",
                 "predictions.parquet"):
        assert (run / name).exists(), name
    assert json.loads((run / "metrics.json").read_text())["test"] == result["test"]
    assert OmegaConf.load(run / "config.yaml").data.source == "planted"
    history = pd.read_csv(run / "metrics.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    preds = pd.read_parquet(run / "predictions.parquet")
    assert list(preds.columns) == ["time", "symbol", "p_down", "p_up", "label"]
    assert str(preds["time"].dt.tz) == "UTC" and len(preds) == 90
    model, info = load_model(run)
    assert info["window"] == 10 and info["classes"] == 2 and info["render"]["name"] == "ohlc"
    # The saved model reproduces the saved predictions from freshly rendered test windows.
    cfg = OmegaConf.to_container(compose("train", PLANTED), resolve=True)
    d = cfg["data"]
    candles = load(d["source"], d["symbols"], d["timeframe"], **d["params"])
    w = dataset.build(candles, window=info["window"], horizon=5, classes=2, timeframe="5m", render=info["render"],
                      progress=False)
    test = w.take(np.isin(w.times, preds["time"].dt.tz_localize(None).to_numpy("datetime64[ns]")))
    np.testing.assert_allclose(predict(model, test.images), preds[["p_down", "p_up"]].to_numpy(), atol=1e-5)


@pytest.mark.slow
def test_shuffled_labels_score_chance(tmp_path):
    cfg = OmegaConf.to_container(compose("train", [*PLANTED, "data.params.episodes=1000"]), resolve=True)
    d, r = cfg["data"], cfg["render"]
    w = dataset.build(load(d["source"], d["symbols"], d["timeframe"], **d["params"]), window=10, horizon=5,
                      classes=2, timeframe="5m", render=r, progress=False)
    w.labels = np.random.default_rng(1).permutation(w.labels)
    a = dataset.split(w.times, timeframe="5m", horizon=5)
    splits = {name: w.take(a == i) for i, name in enumerate(dataset.SPLITS)}
    result = train_mod.train(
        splits, model_kwargs={**cfg["model"], "input_hw": [r["height"], r["width"]]},
        info={"classes": 2}, out_dir=tmp_path, **{**cfg["trainer"], "max_epochs": 3},
    )
    chance = np.bincount(splits["test"].labels).max() / len(splits["test"])
    # 150 test windows: one standard deviation of a coin's accuracy is 0.04.
    assert result["test"]["accuracy"] <= chance + 0.1
    assert abs(result["test"]["roc_auc"] - 0.5) < 0.15


@pytest.mark.slow
def test_resume_continues_a_killed_run_exactly(tmp_path, monkeypatch):
    full = _planted_run(tmp_path / "a", ["trainer.max_epochs=2"])
    real_batch, calls = train_mod._batch, [0]

    def dies_in_epoch_two(*a, **k):
        calls[0] += 1
        if calls[0] > 10:  # 420 / 64 -> 7 steps per epoch, then one batch of val: dies in epoch 2
            raise KeyboardInterrupt
        return real_batch(*a, **k)

    monkeypatch.setattr(train_mod, "_batch", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        _planted_run(tmp_path / "b", ["trainer.max_epochs=2"])
    assert pd.read_csv(tmp_path / "b" / "run" / "metrics.csv")["epoch"].tolist() == [1]
    assert not (tmp_path / "b" / "run" / "model.pt").exists()
    monkeypatch.setattr(train_mod, "_batch", real_batch)
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
def test_ddp_two_cpu_processes_and_a_sweep(tmp_path):
    tiny = [*PLANTED, "data.params.episodes=200", "trainer.max_epochs=1", "trainer.batch_size=32"]
    run = tmp_path / "ddp"
    with socket.socket() as s:  # a free port, so parallel runs on one host do not collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ddp = _cli([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                "-m", "botter.train", *tiny, f"hydra.run.dir={run}"], tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert (run / "model.pt").exists() and len(pd.read_parquet(run / "predictions.parquet")) == 30
    sweep = _cli([str(Path(sys.executable).parent / "botter-train"), "-m", "trainer.lr=1e-3,3e-4", *tiny,
                  f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    lrs = sorted(OmegaConf.load(p).trainer.lr for p in (tmp_path / "sweep").glob("*/config.yaml"))
    assert lrs == [3e-4, 1e-3] and len(list((tmp_path / "sweep").glob("*/metrics.json"))) == 2
