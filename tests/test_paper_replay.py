"""Paper replay of a trained run: parity with botter-backtest, kills at random moments, status."""

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from test_paper import assert_same_fills, expected_fills

from botter.backtest import backtest_predictions
from botter.cli import _paper
from botter.config import compose
from botter.data import load_sample, store_path
from botter.data.store import append_store
from botter.errors import BotterError
from botter.paper import loop, session
from botter.paper.feeds import Replay
from botter.paper.ledger import Ledger
from botter.render import lookback, render
from botter.train import load_model, predict

SYMBOL = "ETH/BTC"


def settings(run) -> dict:
    """Backtest settings whose thresholds make the tiny model trade often (a lasting signal)."""
    p = pd.read_parquet(run / "predictions.parquet")
    return {"cash": 1000.0, "fee": 0.001, "slippage_bps": 5.0, "size": 0.8, "long_only": False,
            "min_hold": 3, "threshold_up": float(np.quantile(p["p_up"], 0.6)),
            "threshold_down": float(np.quantile(p["p_down"], 0.6))}


REPLAY = {"name": "replay", "start": None, "end": None, "pace": 0.0}


def tables(path) -> dict[str, pd.DataFrame]:
    with Ledger(path) as ledger:
        return {name: ledger.table(name) for name in ("bars", "decisions", "orders", "fills")}


@pytest.fixture(scope="module")
def whole(tiny_run):
    """An uninterrupted replay of the run's test period: (summary, ledger path)."""
    result = session.trade(tiny_run, name="whole", feed=REPLAY, backtest=settings(tiny_run), progress=False)
    return result, session.paper_dir(tiny_run, "whole") / "ledger.sqlite"


def test_replay_trades_like_the_backtest(tiny_run, whole):
    bt = settings(tiny_run)
    predictions = pd.read_parquet(tiny_run / "predictions.parquet")
    candles = load_sample(SYMBOL)
    result = backtest_predictions(predictions, {SYMBOL: candles}, **bt)[SYMBOL]
    t = tables(whole[1])
    period = candles.loc[result.equity.index]
    # The replay decides on exactly the run's test windows (and on the candle that fills the last
    # one), with the probabilities the training run wrote.
    assert t["bars"]["time"].tolist() == period.index.tolist()
    np.testing.assert_allclose(t["decisions"]["p_up"].iloc[:-1], predictions["p_up"], atol=1e-5)
    assert len(result.trades) > 5
    assert_same_fills(t["fills"], expected_fills(result, period))
    np.testing.assert_allclose(t["bars"]["equity"].iloc[:-1], result.equity.iloc[:-1], rtol=1e-9)
    assert whole[0]["Candles"] == len(period)


def test_second_run_adds_nothing(tiny_run, whole):
    before = tables(whole[1])
    result = session.trade(tiny_run, name="whole", feed=REPLAY, backtest=settings(tiny_run), progress=False)
    after = tables(whole[1])
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name])
    assert result["Equity"] == whole[0]["Equity"]


def test_other_settings_need_another_name(tiny_run, whole):
    with pytest.raises(BotterError, match="fee: ledger has 0.001, now 0.002"):
        session.trade(tiny_run, name="whole", feed=REPLAY, backtest={**settings(tiny_run), "fee": 0.002},
                      progress=False)


def test_replay_from_the_store_with_a_period(tiny_run, whole, tmp_path):
    append_store(store_path(tmp_path, "binance", SYMBOL, "5m"), load_sample(SYMBOL))
    first, last = (f"'{t:%Y-%m-%dT%H:%M}'" for t in tables(whole[1])["bars"]["time"].iloc[[0, -1]])
    _paper(compose("paper", [f"run_dir={tiny_run}", "name=store", "feed.source=store", f"feed.start={first}",
                             f"feed.end={last}", f"paths.data_dir={tmp_path}", "progress=false",
                             *(f"backtest.{k}={v}" for k, v in settings(tiny_run).items())]))
    got, want = tables(session.paper_dir(tiny_run, "store") / "ledger.sqlite"), tables(whole[1])
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True)


def replay(run_dir, path, candles, start, end, images=None) -> None:
    """Replay `candles` from `start` to `end` (inclusive) into the ledger at `path`, resuming it;
    `images` gets the number of charts each model call read."""
    model, info = load_model(run_dir)
    if images is not None:
        model.register_forward_hook(lambda module, args, out: images.append(len(args[0])))
    bt = settings(run_dir)
    with Ledger(path) as ledger, session.torch_threads(1):
        trader = loop.resume(ledger, model, info, signals={k: bt[k] for k in session.SIGNAL_KEYS},
                             **{k: bt[k] for k in session.COST_KEYS})
        loop.run(Replay(candles, start=start, end=end, progress=False), trader, ledger)


@pytest.fixture(scope="module")
def gapped(tiny_run, whole, tmp_path_factory):
    """ETH/BTC with one candle of the test period removed by hand, right after a candle where the
    uninterrupted replay wants a position, replayed over the test period: a dict of candles, first,
    last, gap (the removed open time), lookback, path (the ledger) and images (charts per model call)."""
    decisions = tables(whole[1])["decisions"]
    held = decisions["time"][(decisions["target"] != 0) & (decisions.index >= 60)].iloc[0]
    candles = load_sample(SYMBOL)
    gap = candles.index[candles.index.get_loc(held) + 1]
    _, info = load_model(tiny_run)
    out = {"candles": candles.drop(gap), "first": decisions["time"].iloc[0], "last": decisions["time"].iloc[-1],
           "gap": gap, "lookback": lookback(info["window"], info["render"]["ma"]),
           "path": tmp_path_factory.mktemp("gap") / "ledger.sqlite", "images": []}
    assert (decisions["time"] > gap).sum() > 2 * out["lookback"]  # charts again well before the end
    replay(tiny_run, out["path"], out["candles"], out["first"], out["last"], out["images"])
    return out


def test_no_chart_across_a_gap_trades_like_the_backtest(tiny_run, gapped):
    candles, first, last, lb = (gapped[k] for k in ("candles", "first", "last", "lookback"))
    t = tables(gapped["path"])
    d = t["decisions"].set_index("time")
    # On the 5m grid `lookback` charts would hold the missing candle; one of them ends on it, so the
    # first lookback - 1 candles after the gap are decided blind: flat, no probabilities.
    blind = candles.index[candles.index > gapped["gap"]][: lb - 1]
    assert d.loc[blind, ["p_down", "p_up"]].isna().all().all() and (d.loc[blind, "target"] == 0).all()
    seen = d.index.difference(blind)
    assert d.loc[seen, ["p_down", "p_up"]].notna().all().all()
    assert gapped["images"] == [1] * len(seen)  # the model read one chart per seen candle, none else

    # The backtest on predictions for the windows of `lookback` consecutive candles, made here by
    # hand (the last candle only fills the one before it).
    model, info = load_model(tiny_run)
    times = candles.index
    i0, i1 = times.get_indexer([first, last])
    ends = np.arange(i0, i1)
    ends = ends[times[ends] - times[ends - lb + 1] == (lb - 1) * pd.Timedelta("5min")]
    p = predict(model, render(candles, info["window"], ends=ends, **info["render"]))  # (N, 2)
    predictions = pd.DataFrame({"time": times[ends], "symbol": SYMBOL, "p_down": p[:, 0], "p_up": p[:, 1]})
    assert predictions["time"].tolist() == seen[:-1].tolist()
    np.testing.assert_allclose(d.loc[seen[:-1], "p_up"], predictions["p_up"], atol=1e-5)
    result = backtest_predictions(predictions, {SYMBOL: candles}, **settings(tiny_run))[SYMBOL]
    period = candles.loc[result.equity.index]
    assert t["bars"]["time"].tolist() == period.index.tolist()
    assert_same_fills(t["fills"], expected_fills(result, period))
    np.testing.assert_allclose(t["bars"]["equity"].iloc[:-1], result.equity.iloc[:-1], rtol=1e-9)
    # The position wanted before the gap is closed at the open after the first blind decision.
    assert blind[1] in set(t["fills"]["time"])


def test_resume_after_a_gap_gives_the_same_ledger(tiny_run, gapped, tmp_path):
    candles, first, lb = gapped["candles"], gapped["first"], gapped["lookback"]
    blind = candles.index[candles.index > gapped["gap"]][: lb - 1]
    path = tmp_path / "stopped.sqlite"
    for stop in (blind[0], blind[-1], gapped["last"]):  # right after the gap, on the last blind candle, the end
        replay(tiny_run, path, candles, first, stop)
    got, want = tables(path), tables(gapped["path"])
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True)


def paper_cli(run, name, *args) -> list[str]:
    bt = settings(run)
    return [sys.executable, "-c", "from botter.cli import paper; paper()", f"run_dir={run}", f"name={name}",
            "progress=false", *(f"backtest.{k}={v}" for k, v in bt.items()), *args]


def bars(path) -> int:
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT count(*) FROM bars").fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # the schema is not written yet
    finally:
        db.close()


def replay_in_child(run, name, pace) -> int:
    """Fork a process that replays (the torch of this one already loaded: no start-up time); its pid."""
    pid = os.fork()
    if pid == 0:  # the child: trade until done or killed, never return into pytest
        code = 1
        try:
            feed = {**REPLAY, "pace": pace}
            session.trade(run, name=name, feed=feed, backtest=settings(run), progress=False)
            code = 0
        finally:
            os._exit(code)
    return pid


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_repeats_nothing(tiny_run, whole):
    path = session.paper_dir(tiny_run, "killed") / "ledger.sqlite"
    total = len(tables(whole[1])["bars"])
    rng = random.Random(7)
    for at in sorted(rng.sample(range(1, total - 10), 8)):
        pid = replay_in_child(tiny_run, "killed", pace=0.005)
        while bars(path) < at and os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.01))  # anywhere inside a candle: between, during or after its write
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), "the replay ended before it was killed"
    # The last restart runs to the end.
    session.trade(tiny_run, name="killed", feed=REPLAY, backtest=settings(tiny_run), progress=False)
    got, want = tables(path), tables(whole[1])
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True)


def test_sigint_finishes_the_candle_and_stops(tiny_run, whole):
    path = session.paper_dir(tiny_run, "interrupted") / "ledger.sqlite"
    pid = replay_in_child(tiny_run, "interrupted", pace=0.01)
    while bars(path) < 30 and os.waitpid(pid, os.WNOHANG) == (0, 0):
        time.sleep(0.002)
    os.kill(pid, signal.SIGINT)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0  # trade() returned: a clean stop
    stopped_at = bars(path)
    assert 30 <= stopped_at < len(tables(whole[1])["bars"])
    session.trade(tiny_run, name="interrupted", feed=REPLAY, backtest=settings(tiny_run), progress=False)
    got, want = tables(path), tables(whole[1])
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True)


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_status_reports(tiny_run, whole):
    path = session.paper_dir(tiny_run, "termed") / "ledger.sqlite"
    proc = subprocess.Popen(paper_cli(tiny_run, "termed", "feed.pace=0.02"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while bars(path) < 20 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping after this candle" in out + err
    stopped_at = bars(path)
    assert 20 <= stopped_at < len(tables(whole[1])["bars"])
    assert re.search(rf"\nCandles +{stopped_at}\n", out)  # the summary of where it stopped
    assert "SIGTERM" in (path.parent / "paper.log").read_text()  # the paper run's log, beside its ledger


def test_status_prints_and_plots(tiny_run, whole, capsys):
    cfg = compose("paper", [f"run_dir={tiny_run}", "name=whole", "mode=status"])
    _paper(cfg)
    out = capsys.readouterr().out
    for key in ("Equity", "Position", "PnL", "# Round trips", "Last candle"):
        assert key in out
    assert f"{whole[0]['Last candle']}" in out
    assert (whole[1].parent / "equity.png").stat().st_size > 10_000
    with pytest.raises(BotterError, match="no paper run 'nothing'"):
        _paper(compose("paper", [f"run_dir={tiny_run}", "name=nothing", "mode=status"]))
