"""Walk-forward evaluation: folds that never let a label reach the test span, ensembles, the
out-of-sample table, the report, and the last fold's ensemble in botter-backtest and botter-paper."""

import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from paper_helpers import tables

from botter import dataset, inference, runs
from botter import walkforward as wf
from botter.cli.backtest import backtest
from botter.cli.paper import paper
from botter.cli.walkforward import walkforward
from botter.config import compose
from botter.data import load
from botter.errors import BotterError
from botter.evaluate import bootstrap
from botter.model import build_model
from botter.paper import session

# Planted candles on small images (1 x 32 x 30): 600 episodes, 3 folds of 120 test episodes, each
# trained on 180 and early-stopped on 60.
PLANTED = ["data=planted", "data.params.episodes=600", "data.window=10", "render.height=32", "trainer.batch_size=64",
           "trainer.progress=false", "trainer.device=cpu", "dataset.cache=false",
           "walkforward.train=30%", "walkforward.val=10%", "walkforward.step=20%"]
TINY = {"in_channels": 1, "layers": [{"type": "Conv2d", "out_channels": 4, "kernel_size": 5, "stride": 2},
                                     {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 4}],
        "head": {"hidden": [], "dropout": 0.0, "num_classes": 2}, "input_hw": [32, 30]}


def planted_windows(episodes=600):
    cfg = OmegaConf.to_container(compose("walkforward", [*PLANTED, f"data.params.episodes={episodes}"]), resolve=True)
    d = cfg["data"]
    candles = load(d["source"], d["symbols"], d["timeframe"], **d["params"])
    return dataset.build(candles, window=10, horizon=5, classes=2, timeframe="5m", render=cfg["render"], progress=False)


def test_spans_read_candles_shares_and_durations():
    assert wf.parse_span(12, "train") == 12 and wf.parse_span("12", "train") == 12
    assert wf.parse_span(0.25, "val") == 0.25 and wf.parse_span("25%", "val") == 0.25
    assert wf.parse_span("2.5%", "val") == 0.025
    assert wf.parse_span("7d", "step") == pd.Timedelta(days=7) and wf.parse_span("12h", "step") == pd.Timedelta(hours=12)
    assert wf.parse_span("30m", "val") == pd.Timedelta(minutes=30) and wf.parse_span("2w", "train") == pd.Timedelta(weeks=2)
    for bad in (0, -3, 1.5, 0.0, "7x", "d", True, None, "0d", "100%", "0%", "%"):
        with pytest.raises(BotterError, match=r"walkforward.train=.* is not a span"):
            wf.parse_span(bad, "train")


def test_folds_by_hand():
    # 20 decision times 5 minutes apart, two symbols; labels settled 2 candles after the decision.
    times = np.repeat(pd.date_range("2024-01-01", periods=20, freq="5min").to_numpy(), 2)
    exits = times + np.timedelta64(10, "m")
    folds = wf.make_folds(times, exits, train=6, val=4, step=4)
    assert [str(pd.Timestamp(f.test_start).time()) for f in folds] == ["00:50:00", "01:10:00", "01:30:00"]
    first = folds[0].assignment.reshape(-1, 2)[:, 0]  # per time (both symbols alike)
    # train: times 0-5, kept when settled by the val start (time 6): times 0-4; val 6-9, settled by 10: 6-8.
    assert first.tolist() == [0] * 5 + [-1] + [1] * 3 + [-1] + [2] * 4 + [-1] * 6
    last = folds[2].assignment.reshape(-1, 2)[:, 0]
    assert last.tolist() == [-1] * 8 + [0] * 5 + [-1] + [1] * 3 + [-1] + [2] * 2  # rolling: train 8-13
    anchored = wf.make_folds(times, exits, train=6, val=4, step=4, mode="anchored")[2].assignment.reshape(-1, 2)[:, 0]
    assert anchored.tolist() == [0] * 13 + [-1] + [1] * 3 + [-1] + [2] * 2
    # A remainder shorter than half a step joins the last fold: step 7 tests 10-16, and 17-19 join it.
    assert len(wf.make_folds(times, exits, train=6, val=4, step=7)) == 1
    with pytest.raises(BotterError, match="leave no decision to test"):
        wf.make_folds(times, exits, train=16, val=4, step=2)
    with pytest.raises(BotterError, match="walkforward.mode='sideways'"):
        wf.make_folds(times, exits, train=6, val=4, step=4, mode="sideways")


SPANS = st.one_of(st.integers(1, 60), st.floats(0.02, 0.5), st.integers(1, 300).map(lambda m: f"{m * 5}m"),
                  st.integers(1, 20).map(lambda h: f"{h}h"))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_no_train_or_validation_window_reaches_its_test_span_or_the_purge_gap(data):
    slots = np.sort(np.array(data.draw(st.lists(st.integers(0, 400), min_size=3, max_size=300))))
    times = (pd.Timestamp("2024-01-01") + pd.to_timedelta(slots * 5, unit="min")).to_numpy()  # repeats: symbols
    settle = np.array(data.draw(st.lists(st.integers(1, 12), min_size=len(slots), max_size=len(slots))))
    exits = times + settle * np.timedelta64(5, "m")
    exits[slots + settle > slots.max()] = np.datetime64("NaT")  # past the last candle: never settled
    spans = {k: data.draw(SPANS, label=k) for k in ("train", "val", "step")}
    mode = data.draw(st.sampled_from(wf.MODES))
    try:
        folds = wf.make_folds(times, exits, **spans, mode=mode)
    except BotterError:
        assume(False)
    tested = np.zeros(len(times), dtype=int)
    for f in folds:
        a = f.assignment
        assert f.train_start <= f.val_start < f.test_start
        train, val, test = a == 0, a == 1, a == 2
        # A train window's label is settled by the first validation decision, a validation window's
        # by the first test decision: neither reaches the test span nor the purge gap before it.
        assert (times[train] >= f.train_start).all() and (exits[train] <= f.val_start).all()
        assert (times[val] >= f.val_start).all() and (exits[val] <= f.test_start).all()
        assert not np.isnat(exits[train | val]).any()
        assert (times[test] >= f.test_start).all() and test.any()
        if not np.isnat(f.test_end):
            assert (times[test] < f.test_end).all()
        tested += test
    # The test spans cover every decision from the first test decision on, exactly once.
    assert (tested == (times >= folds[0].test_start)).all()


def test_an_ensemble_of_identical_members_equals_one_member(tmp_path):
    windows = planted_windows(150)
    torch.manual_seed(0)
    model = build_model(**TINY)
    one = inference.probabilities([model], windows)
    np.testing.assert_allclose(inference.probabilities([model, model, model], windows), one, rtol=0, atol=1e-15)
    # Members trained with the same seed are the same model: an ensemble of them predicts like one.
    folds = wf.make_folds(windows.times, windows.exits(5), train=0.5, val=0.2, step=0.3)
    trainer = {"max_epochs": 1, "batch_size": 32, "progress": False, "device": "cpu"}
    twice = wf.run(windows, folds, seeds=[3, 3], model_kwargs=TINY, trainer=trainer, work_dir=tmp_path)
    once = wf.run(windows, folds, seeds=[3], model_kwargs=TINY, trainer=trainer, work_dir=tmp_path)
    np.testing.assert_allclose(twice.probs, once.probs, rtol=0, atol=1e-15)
    other = wf.run(windows, folds, seeds=[4], model_kwargs=TINY, trainer=trainer, work_dir=tmp_path)
    assert not np.allclose(other.probs[once.fold > 0], once.probs[once.fold > 0])  # the seed matters
    assert len(twice.states) == 2 and twice.history["member"].tolist().count(2) == len(folds)
    assert list(tmp_path.iterdir()) == []  # the members' checkpoints are gone


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """A planted walk-forward run folder: 3 rolling folds, ensembles of 2 (about 30 s)."""
    root = tmp_path_factory.mktemp("wf")
    result = walkforward(compose("walkforward", [*PLANTED, f"paths.data_dir={root / 'data'}"]), out_dir=root / "run")
    return root / "run", result


@pytest.mark.slow
def test_planted_folds_all_score_and_the_intervals_exclude_chance(planted_run, capsys):
    run, result = planted_run
    folds = pd.read_csv(run / "folds.csv", index_col=0)
    assert len(folds) == 3 and (folds["accuracy"] >= 0.95).all() and (folds["roc_auc"] >= 0.95).all()
    assert (folds["majority acc"] < 0.7).all()
    for metric in ("accuracy", "roc_auc"):
        i = result["intervals"][metric]
        assert i["low"] > 0.5 and i["verdict"] == "better" and i["difference_low"] > 0.2
    assert json.loads((run / "metrics.json").read_text())["intervals"] == result["intervals"]
    assert [f["fold"] for f in result["folds"]] == [1, 2, 3]
    for name in ("folds.png", "equity.png", "backtest/equity.png"):
        assert (run / name).stat().st_size > 10_000, name
    training = pd.read_csv(run / "training.csv")
    assert sorted(set(zip(training["fold"], training["seed"]))) == [(f, s) for f in (1, 2, 3) for s in (0, 1)]


@pytest.mark.slow
def test_the_out_of_sample_table_has_one_prediction_per_decidable_candle_after_the_first_training_span(planted_run):
    run, result = planted_run
    opened = runs.open_run(run)
    predictions = opened.predictions()
    windows = planted_windows()
    folds = wf.make_folds(windows.times, windows.exits(5), train=0.3, val=0.1, step=0.2)
    after = pd.DatetimeIndex(windows.times[windows.times >= folds[0].test_start]).tz_localize("UTC")
    assert not predictions.duplicated(["time", "symbol"]).any()
    assert predictions["time"].tolist() == after.tolist()  # one symbol: every decision time, in order
    assert predictions["label"].isna().sum() == 6 * predictions["label"].notna().sum()  # unknown labels predicted too
    assert result["test_windows"] == {"decided": len(after), "labelled": int(predictions["label"].notna().sum())}
    assert predictions["fold"].tolist() == sorted(predictions["fold"]) and set(predictions["fold"]) == {1, 2, 3}
    # run.json: the last fold's periods (what its model saw), every fold's spans, kind walkforward.
    assert opened.kind == "walkforward" and opened.periods == opened.meta["folds"][-1]["periods"]
    last = opened.periods["PLANTED/BTC"]
    assert pd.Timestamp(last["test"][0]) == predictions.loc[predictions["fold"] == 3, "time"].min()
    assert last["train"][1] <= last["val"][0] and last["val"][1] <= last["test"][0]


@pytest.mark.slow
def test_the_last_folds_ensemble_backtests_and_paper_trades(planted_run):
    run, _ = planted_run
    opened = runs.open_run(run)
    assert len(inference.load(opened).models) == 2
    predictions = opened.predictions()
    last = predictions[predictions["fold"] == 3]
    start = f"period.start='{last['time'].min():%Y-%m-%dT%H:%M}'"
    # botter-backtest: its own predictions (every fold's, out of sample) ...
    own = backtest(compose("backtest", [f"run_dir={run}", "name=own"]))
    assert own["portfolio"].equity.index[0] == predictions["time"].min()
    # ... and the last fold's ensemble on the candles: refused over what it was fitted on; over the
    # last fold's test span it computes the run's own predictions again, so it trades the same.
    # (botter-backtest has no render group: planted's moving-average history, render.ma, is given here.)
    candles = ["data=planted", "data.params.episodes=600", "data.window=10", "data.params.ma=10"]
    with pytest.raises(BotterError, match="would be in-sample"):
        backtest(compose("backtest", [f"run_dir={run}", *candles, "name=in"]))
    # Before the last fold's training span too: the earlier folds' test spans were its training.
    first = pd.Timestamp(opened.periods["PLANTED/BTC"]["train"][0])
    early = [f"period.start='{first - pd.Timedelta('1D'):%Y-%m-%dT%H:%M}'", f"period.end='{first:%Y-%m-%dT%H:%M}'"]
    with pytest.raises(BotterError, match="would be in-sample: PLANTED/BTC .* starts before the end of the training"):
        backtest(compose("backtest", [f"run_dir={run}", *candles, *early, "name=early"]))
    with pytest.raises(BotterError, match="this paper run would be in-sample: PLANTED/BTC"):
        paper(compose("paper", [f"run_dir={run}", "name=early", "progress=false",
                                *(e.replace("period.", "feed.") for e in early)]))
    model = backtest(compose("backtest", [f"run_dir={run}", *candles, start, "name=model"]))["portfolio"]
    saved = backtest(compose("backtest", [f"run_dir={run}", start, "name=saved"]))["portfolio"]
    pd.testing.assert_series_equal(model.equity, saved.equity)
    # botter-paper replays the last fold's test span with the last fold's ensemble: the same numbers.
    paper(compose("paper", [f"run_dir={run}", "name=replay", "progress=false"]))
    decided = tables(session.paper_dir(run, "replay") / "ledger.sqlite")["decisions"].dropna(subset=["p_up"])
    assert decided["time"].iloc[0] == last["time"].min()
    merged = decided.merge(last, on="time", suffixes=("_paper", ""))
    assert len(merged) == len(last) and (merged["p_up_paper"] == merged["p_up"]).all()


@pytest.mark.slow
def test_shuffled_labels_give_intervals_that_contain_chance(tmp_path):
    windows = planted_windows(500)
    labelled = np.flatnonzero(windows.labels >= 0)
    labels = windows.labels.copy()
    labels[labelled] = np.random.default_rng(1).permutation(labels[labelled])
    shuffled = replace(windows, labels=labels)
    folds = wf.make_folds(shuffled.times, shuffled.exits(5), train=0.4, val=0.1, step=0.25)
    trainer = {"max_epochs": 2, "batch_size": 64, "progress": False, "device": "cpu"}
    out = wf.run(shuffled, folds, seeds=[0, 1], model_kwargs=TINY, trainer=trainer, work_dir=tmp_path)
    _, pooled = wf.scores(shuffled, folds, out, classes=2)
    intervals = bootstrap(pooled["times"], pooled["labels"], pooled["probs"], pooled["baselines"], horizon=5)
    # Chance: for accuracy the share of the most frequent class (what knowing nothing scores), for AUC 0.5.
    chance = {"accuracy": np.bincount(pooled["labels"]).max() / len(pooled["labels"]), "roc_auc": 0.5}
    for metric, level in chance.items():
        assert intervals[metric]["low"] < level < intervals[metric]["high"], metric
        assert intervals[metric]["verdict"] == "not distinguishable"


@pytest.mark.slow
def test_members_side_by_side_in_processes_equal_one_after_another(tmp_path):
    windows = planted_windows(150)
    folds = wf.make_folds(windows.times, windows.exits(5), train=0.5, val=0.2, step=0.15)
    trainer = {"max_epochs": 1, "batch_size": 32, "progress": False, "device": "cpu"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each of the two CPU workers gets on this 2-core machine
    try:
        alone = wf.run(windows, folds, seeds=[0, 1], model_kwargs=TINY, trainer=trainer, work_dir=tmp_path)
    finally:
        torch.set_num_threads(threads)
    together = wf.run(windows, folds, seeds=[0, 1], model_kwargs=TINY, trainer=trainer, work_dir=tmp_path,
                      devices=["cpu", "cpu"])
    assert len(folds) >= 2
    np.testing.assert_array_equal(together.fold, alone.fold)
    np.testing.assert_allclose(together.probs, alone.probs, rtol=0, atol=1e-6)
    pd.testing.assert_frame_equal(together.history.drop(columns=["seconds", "train_seconds"]),
                                  alone.history.drop(columns=["seconds", "train_seconds"]))


def test_a_fold_without_labelled_training_windows_is_one_clear_error():
    windows = planted_windows(100)
    folds = wf.make_folds(windows.times, windows.exits(5), train=3, val=40, step=40)  # 3 decisions: no label
    with pytest.raises(BotterError, match="fold 1 has no labelled train window"):
        wf.check_folds(windows, folds)


@pytest.mark.slow
def test_walkforward_on_the_store_with_duration_spans_and_a_tiny_model(tmp_path):
    from botter.data import load_sample, store_path
    from botter.data.store import append_store

    append_store(store_path(tmp_path / "data", "binance", "ETH/BTC", "5m"), load_sample("ETH/BTC"))
    layers = "[{type:Conv2d,out_channels:4,kernel_size:5,stride:2},{type:ReLU},{type:MaxPool2d,kernel_size:4}]"
    result = walkforward(compose("walkforward", [
        "data=store", "data.symbols=[ETH/BTC]", "data.timeframe=5m", "data.end=2018-01-16",
        f"paths.data_dir={tmp_path / 'data'}",
        f"model.layers={layers}", "trainer.max_epochs=1", "trainer.progress=false", "trainer.device=cpu",
        "walkforward.train=2d", "walkforward.val=12h", "walkforward.step=1d", "walkforward.ensemble=1",
        "walkforward=anchored", "dataset.cache=false", "bootstrap.samples=200"]), out_dir=tmp_path / "run")
    folds = pd.read_csv(tmp_path / "run" / "folds.csv", index_col=0)
    # First decision 2018-01-10 08:05 (39 candles after the first): the first test day starts 2.5 days
    # later, then one a day; the last 4 hours (to 01-15 23:55) join the fold before them.
    assert folds["test from"].tolist() == ["2018-01-12 20:05", "2018-01-13 20:05", "2018-01-14 20:05"]
    assert folds["test to"].iloc[-1] == "2018-01-15 23:55"
    assert (folds["train from"] == folds["train from"].iloc[0]).all()  # anchored
    assert result["intervals"]["samples"] == 200 and "sharpe" in result["intervals"]


@pytest.mark.parametrize("override, says", [
    ("walkforward.ensemble=0", "walkforward.ensemble=0 must be a whole number >= 1"),
    ("walkforward.ensemble=-1", "walkforward.ensemble=-1 must be a whole number >= 1"),
    ("walkforward.ensemble=1.5", "walkforward.ensemble=1.5 must be a whole number >= 1"),
    ("walkforward.purge=null", "walkforward.purge=null must be a whole number of candles >= data.horizon=5"),
    ("walkforward.devices=cpu", "walkforward.devices=cpu must be a list of devices"),
    ("walkforward.devices=[cuda:0]", "walkforward.devices='cuda:0' but CUDA is not available: use walkforward.devices=null"),
    ("walkforward.devices=[bogus]", "walkforward.devices='bogus' is not a torch device"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0 must be a whole number >= 1"),
    ("trainer.batch_size=0", "trainer.batch_size=0 must be a whole number >= 1"),  # not "unset" (null)
    ("walkforward.train=200%", "walkforward.train=200% is not a span"),
    ("walkforward.mode=sideways", "walkforward.mode=sideways is not one of: rolling, anchored"),
])
def test_bad_settings_are_one_line_before_anything_is_written(tmp_path, override, says):
    if "cuda" in override and torch.cuda.is_available():
        pytest.skip("CUDA is here")
    with pytest.raises(BotterError, match=f"^{re.escape(says)}"):
        walkforward(compose("walkforward", [*PLANTED, "data.params.episodes=100", override]), out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_spans_shorter_than_a_candle_and_a_purge_that_leaves_nothing_name_their_key():
    windows = planted_windows(100)
    with pytest.raises(BotterError, match=r"^walkforward.step=1m is shorter than one candle \(0 days 00:05:00\)"):
        wf.make_folds(windows.times, windows.exits(5), train=0.3, val=0.1, step="1m")
    folds = wf.make_folds(windows.times, windows.exits(100_000), train=0.3, val=0.1, step=0.2)
    with pytest.raises(BotterError, match=r"or a shorter walkforward.purge=100000"):
        wf.check_folds(windows, folds, 100_000)
