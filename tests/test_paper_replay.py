"""Paper replay of a trained run: parity with botter-backtest, kills at random moments, status."""

import json
import logging
import multiprocessing
import os
import random
import re
import signal
import sqlite3
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from paper_helpers import (
    REPLAY,
    SYMBOL,
    assert_same_ledger,
    bars,
    paper_cli,
    settings,
    tables,
    trade_into,
    wait_for_bars,
)
from test_paper import assert_same_fills, expected_fills

from botter import inference, runs
from botter.backtest import backtest_predictions
from botter.cli.paper import paper as _paper
from botter.config import compose
from botter.data import load_sample, store_path
from botter.data.store import append_store
from botter.errors import BotterError
from botter.paper import session
from botter.paper.feeds import Replay
from botter.paper.ledger import Ledger


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
    assert t["decisions"]["p_up"].iloc[:-1].tolist() == predictions["p_up"].tolist()  # the same numbers
    assert len(result.trades) > 5
    assert_same_fills(t["fills"], expected_fills(result, period))
    np.testing.assert_allclose(t["bars"]["equity"].iloc[:-1], result.equity.iloc[:-1], rtol=1e-9)
    assert whole[0].loc["Candles", "portfolio"] == whole[0].loc["Candles", SYMBOL] == len(period)


def test_second_run_adds_nothing(tiny_run, whole):
    before = tables(whole[1])
    result = session.trade(tiny_run, name="whole", feed=REPLAY, backtest=settings(tiny_run), progress=False)
    after = tables(whole[1])
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name])
    assert result.loc["Equity", "portfolio"] == whole[0].loc["Equity", "portfolio"]


def test_other_settings_need_another_name(tiny_run, whole):
    with pytest.raises(BotterError, match="fee: ledger has 0.001, now 0.002"):
        session.trade(tiny_run, name="whole", feed=REPLAY, backtest=settings(tiny_run, fee=0.002),
                      progress=False)


def test_replay_from_the_store_with_a_period(tiny_run, whole, tmp_path):
    append_store(store_path(tmp_path, "binance", SYMBOL, "5m"), load_sample(SYMBOL))
    first, last = (f"'{t:%Y-%m-%dT%H:%M}'" for t in tables(whole[1])["bars"]["time"].iloc[[0, -1]])
    _paper(compose("paper", [f"run_dir={tiny_run}", "name=store", "feed.source=store", f"feed.start={first}",
                             f"feed.end={last}", f"paths.data_dir={tmp_path}", "progress=false",
                             *(f"backtest.{k}={v}" for k, v in settings(tiny_run).items())]))
    assert_same_ledger(session.paper_dir(tiny_run, "store") / "ledger.sqlite", tables(whole[1]))


@pytest.fixture(scope="module")
def gapped(tiny_run, whole, tmp_path_factory):
    """ETH/BTC with one candle of the test period removed by hand, right after a candle where the
    uninterrupted replay wants a position, replayed over the test period: a dict of candles, first,
    last, gap (the removed open time), lookback, path (the ledger) and images (charts per model call)."""
    decisions = tables(whole[1])["decisions"]
    held = decisions["time"][(decisions["target"] != 0) & (decisions.index >= 60)].iloc[0]
    candles = load_sample(SYMBOL)
    gap = candles.index[candles.index.get_loc(held) + 1]
    out = {"candles": candles.drop(gap), "first": decisions["time"].iloc[0], "last": decisions["time"].iloc[-1],
           "gap": gap, "lookback": inference.load(runs.open_run(tiny_run)).lookback,
           "path": tmp_path_factory.mktemp("gap") / "ledger.sqlite", "images": []}
    assert (decisions["time"] > gap).sum() > 2 * out["lookback"]  # charts again well before the end
    trade_into(tiny_run, out["path"], Replay({SYMBOL: out["candles"]}, start=out["first"], end=out["last"], progress=False),
               out["images"])
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
    # The model read one chart per seen candle, none else (in a batch of two: see botter.inference).
    assert gapped["images"] == [2] * len(seen)

    # The backtest of the run's model on the same candles (what botter-backtest data=... does): its
    # predictions are the paper decisions, number for number (the last candle only fills the one before).
    predictions = inference.load(runs.open_run(tiny_run)).predict({SYMBOL: candles})
    predictions = predictions[(predictions["time"] >= first) & (predictions["time"] < last)]
    assert predictions["time"].tolist() == seen[:-1].tolist()
    assert d.loc[seen[:-1], "p_up"].tolist() == predictions["p_up"].tolist()
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
        trade_into(tiny_run, path, Replay({SYMBOL: candles}, start=first, end=stop, progress=False))
    assert_same_ledger(path, tables(gapped["path"]))


def replay_in_child(run, name, pace) -> multiprocessing.Process:
    """Fork a process that replays (the torch of this one already loaded: no start-up time). Signal it
    only while `is_alive()`: until it is reaped its pid stays its own, even once it has ended."""
    feed = {**REPLAY, "pace": pace}
    child = multiprocessing.get_context("fork").Process(
        target=session.trade, args=(run,), kwargs={"name": name, "feed": feed, "backtest": settings(run),
                                                   "progress": False})
    child.start()
    return child


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_repeats_nothing(tiny_run, whole):
    path = session.paper_dir(tiny_run, "killed") / "ledger.sqlite"
    total = len(tables(whole[1])["bars"])
    rng = random.Random(7)
    kills = 0
    # Each kill is meant 50 candles (over 0.25 s of pacing alone) or more before the end; a child that
    # ends first all the same has traded the rest, and leaves nothing to kill.
    for at in sorted(rng.sample(range(1, total - 50), 8)):
        child = replay_in_child(tiny_run, "killed", pace=0.005)
        wait_for_bars(path, at, child)
        time.sleep(rng.uniform(0, 0.01))  # anywhere inside a candle: between, during or after its write
        child.kill()  # SIGKILL, unless it has ended
        child.join()
        if child.exitcode == 0:
            break
        assert child.exitcode == -signal.SIGKILL, f"the replay failed (exit code {child.exitcode})"
        kills += 1
    assert kills >= 5, f"only {kills} of 8 kills landed before the replay ended"
    # The last restart runs to the end.
    session.trade(tiny_run, name="killed", feed=REPLAY, backtest=settings(tiny_run), progress=False)
    assert_same_ledger(path, tables(whole[1]))


def trade_and_kill(run, name, statement: str, count: int) -> None:
    """In a forked child: replay, and SIGKILL this process as the ledger starts the `count`-th
    statement beginning with `statement` among those of the candles it writes (from its first
    INSERT INTO bars on; sqlite3 calls the trace as a statement starts, before it has any effect)."""
    connect, seen, started = sqlite3.connect, 0, False

    def trace(sql):
        nonlocal seen, started
        started = started or sql.startswith("INSERT INTO bars")
        seen += started and sql.startswith(statement)
        if seen == count:
            os.kill(os.getpid(), signal.SIGKILL)

    def traced(*args, **kwargs):
        db = connect(*args, **kwargs)
        db.set_trace_callback(trace)
        return db

    sqlite3.connect = traced  # in this child only
    session.trade(run, name=name, feed=REPLAY, backtest=settings(run), progress=False)


def test_sigkill_while_long_short_and_flat_at_the_shipped_settings(tiny_run, whole):
    """Killed as it writes a candle while the account is long, short, flat, and with an order waiting
    for the next open: the ledger holds exactly the candles before, and the restarts end in the
    uninterrupted ledger. The kills land at the first, a middle and the last statement of a candle."""
    want = tables(whole[1])
    sides, targets = want["bars"]["side"].to_numpy(), want["decisions"]["target"].to_numpy()
    kills, after = [], 5
    for held, where in ((1, "INSERT INTO bars"), (-1, "INSERT INTO decisions"), (0, "COMMIT")):
        i = after + int(np.flatnonzero(sides[after:] == held)[0]) + 1  # candle i is written while `held` is held
        kills.append((i, where))
        after = i + 5
    i = after + int(np.flatnonzero(targets[after:] != sides[after:])[0]) + 1  # an order waits for i's open
    kills.append((i, "INSERT INTO fills"))
    assert i < len(sides) - 5
    path = session.paper_dir(tiny_run, "killed_at") / "ledger.sqlite"
    times = want["bars"]["time"]
    for i, where in kills:
        # the statements of that kind from the restart to candle i: one per candle, a fill only where one is
        table = want["fills"] if where == "INSERT INTO fills" else want["bars"]
        count = int(table["time"].between(times[bars(path)[0]], times[i]).sum())
        child = multiprocessing.get_context("fork").Process(
            target=trade_and_kill, args=(tiny_run, "killed_at", where, count))
        child.start()
        child.join()
        assert child.exitcode == -signal.SIGKILL, f"the replay failed (exit code {child.exitcode})"
        got = tables(path)
        assert len(got["bars"]) == i and got["bars"]["side"].iloc[-1] == sides[i - 1]
        for name, table in got.items():
            pd.testing.assert_frame_equal(table, want[name][want[name]["time"] < times[i]]
                                          .reset_index(drop=True), check_exact=True)
    session.trade(tiny_run, name="killed_at", feed=REPLAY, backtest=settings(tiny_run), progress=False)
    assert_same_ledger(path, want)


# The ledger's schema as botter wrote it before schema versions (version 1), verbatim.
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bars (
    time INTEGER PRIMARY KEY,       -- candle open time, UTC epoch ms
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
    position REAL NOT NULL,         -- base units held at the close (negative = short)
    side INTEGER NOT NULL,          -- -1, 0, 1: the target that position was filled for
    cash REAL NOT NULL,             -- quote units
    equity REAL NOT NULL            -- cash + position * close, quote units
);
CREATE TABLE IF NOT EXISTS decisions (
    time INTEGER PRIMARY KEY REFERENCES bars(time),
    p_down REAL, p_up REAL, p_flat REAL,  -- NULL: no chart (a gap in its lookback), the model was not asked
    target INTEGER NOT NULL         -- -1, 0, 1: wanted from the next candle's open on
);
CREATE TABLE IF NOT EXISTS orders (
    time INTEGER PRIMARY KEY REFERENCES bars(time),
    side TEXT NOT NULL,             -- buy or sell
    target INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS fills (
    time INTEGER PRIMARY KEY REFERENCES bars(time),
    order_time INTEGER NOT NULL UNIQUE REFERENCES orders(time),
    side TEXT NOT NULL,
    quantity REAL NOT NULL,         -- base units, > 0
    price REAL NOT NULL,            -- quote per base unit, slippage included
    fee REAL NOT NULL               -- quote units
);
"""
V1_COLUMNS = {"bars": ["time", "open", "high", "low", "close", "volume", "position", "side", "cash", "equity"],
              "decisions": ["time", "p_down", "p_up", "p_flat", "target"], "orders": ["time", "side", "target"],
              "fills": ["time", "order_time", "side", "quantity", "price", "fee"]}


def test_a_version_1_ledger_is_migrated_and_resumes(tiny_run, whole, capsys, caplog):
    """A ledger written by the botter before schema versions, stopped mid-way (long, with min_hold
    still locking the position): status reads it, and the run resumes it to the uninterrupted ledger."""
    want = tables(whole[1])
    sides = want["bars"]["side"].to_numpy()
    k = int(np.flatnonzero((sides[1:] == 1) & (sides[:-1] != 1))[3]) + 2  # two candles into a long
    cut = want["bars"]["time"][k]
    bt = settings(tiny_run)
    with Ledger(whole[1], readonly=True) as ledger:
        model = ledger.meta()["model_sha256"]
    meta = {"symbol": SYMBOL, "timeframe": "5m", "feed": "replay", "model_sha256": model, "sample": "out-of-sample",
            **{key: bt[key] for key in (*session.COST_KEYS, *session.SIGNAL_KEYS)}}
    path = session.paper_dir(tiny_run, "v1") / "ledger.sqlite"
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.executemany("INSERT INTO meta VALUES (?, ?)", [(key, json.dumps(v)) for key, v in meta.items()])
    for name, columns in V1_COLUMNS.items():
        rows = want[name][want[name]["time"] < cut][columns].copy()
        for col in ("time", "order_time"):
            if col in rows:
                rows[col] = (rows[col] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
        db.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(columns))})", rows.astype(object).values.tolist())
    db.commit()
    db.close()

    # A status reads, and a reader never writes: only the run that resumes it migrates it.
    files = {p.name: p.read_bytes() for p in path.parent.iterdir()}
    with pytest.raises(BotterError, match="has schema version 1, older than 2: resume it with botter-paper"):
        _paper(compose("paper", [f"run_dir={tiny_run}", "name=v1", "mode=status"]))
    assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == files
    with caplog.at_level(logging.WARNING, logger="botter.paper.ledger"):
        session.trade(tiny_run, name="v1", feed=REPLAY, backtest=bt, progress=False)
    assert_same_ledger(path, want)
    _paper(compose("paper", [f"run_dir={tiny_run}", "name=v1", "mode=status"]))
    assert re.search(rf"\nCandles +{len(want['bars'])} +{len(want['bars'])}\n", capsys.readouterr().out)
    assert "did not record source, exchange, sandbox" in caplog.text  # recorded from the run that resumed it
    with Ledger(path, readonly=True) as ledger:
        assert ledger.meta()["symbols"] == [SYMBOL] and ledger.meta()["exchange"] == "binance"
        assert ledger.db.execute("PRAGMA user_version").fetchone() == (2,)


@pytest.mark.parametrize("changes", [
    {"size": 0.3, "fee": 0.0, "slippage_bps": 0.0, "long_only": True, "min_hold": 12},
    {"size": 1.0, "fee": 0.01, "slippage_bps": 20.0, "min_hold": 1},
])
def test_stopped_anywhere_at_other_settings_it_resumes_to_the_same_ledger(tiny_run, whole, tmp_path, changes):
    """Stopped one candle into a position (min_hold still locking it), with an order waiting, and
    anywhere else, under other valid settings: each restart goes on as if it had never stopped."""
    candles = {SYMBOL: load_sample(SYMBOL)}
    first, last = tables(whole[1])["bars"]["time"].iloc[[0, -1]]
    trade_into(tiny_run, tmp_path / "whole.sqlite", Replay(candles, start=first, end=last, progress=False), **changes)
    want = tables(tmp_path / "whole.sqlite")
    times, sides = want["bars"]["time"], want["bars"]["side"].to_numpy()
    entered = np.flatnonzero((sides[1:] != 0) & (sides[1:] != sides[:-1])) + 1
    waiting = np.flatnonzero(want["decisions"]["target"].to_numpy() != sides)
    assert len(entered) > 3 and len(waiting) > 3
    stops = sorted({times[entered[1]], times[entered[-2]], times[waiting[2]], times[len(times) // 2], last})
    for stop in stops:
        trade_into(tiny_run, tmp_path / "stopped.sqlite", Replay(candles, start=first, end=stop, progress=False),
                   **changes)
    assert_same_ledger(tmp_path / "stopped.sqlite", want)


def test_sigint_finishes_the_candle_and_stops(tiny_run, whole):
    path = session.paper_dir(tiny_run, "interrupted") / "ledger.sqlite"
    total = len(tables(whole[1])["bars"])
    child = replay_in_child(tiny_run, "interrupted", pace=0.03)  # some 5 s left for the signal to land
    wait_for_bars(path, 30, child)
    if child.is_alive():
        os.kill(child.pid, signal.SIGINT)
    child.join()
    assert child.exitcode == 0  # trade() returned: a clean stop
    stopped_at = bars(path)[0]
    assert 30 <= stopped_at < total, "the replay ended before the SIGINT"
    session.trade(tiny_run, name="interrupted", feed=REPLAY, backtest=settings(tiny_run), progress=False)
    assert_same_ledger(path, tables(whole[1]))


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_status_reports(tiny_run, whole):
    path = session.paper_dir(tiny_run, "termed") / "ledger.sqlite"
    proc = subprocess.Popen(paper_cli(tiny_run, "termed", "feed.pace=0.02"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_bars(path, 20, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping after this candle" in out + err
    stopped_at = bars(path)[0]
    assert 20 <= stopped_at < len(tables(whole[1])["bars"])
    assert re.search(rf"\nCandles +{stopped_at} +{stopped_at}\n", out)  # the summary of where it stopped
    assert "SIGTERM" in (path.parent / "paper.log").read_text()  # the paper run's log, beside its ledger


def test_status_prints_and_plots(tiny_run, whole, capsys):
    cfg = compose("paper", [f"run_dir={tiny_run}", "name=whole", "mode=status"])
    _paper(cfg)
    out = capsys.readouterr().out
    for key in ("Equity", "Position", "PnL", "# Round trips", "Last candle"):
        assert key in out
    assert f"{whole[0].loc['Last candle', 'portfolio']}" in out
    assert (whole[1].parent / "equity.png").stat().st_size > 10_000
    with pytest.raises(BotterError, match="no paper run 'nothing'"):
        _paper(compose("paper", [f"run_dir={tiny_run}", "name=nothing", "mode=status"]))


def test_a_candle_no_chart_can_be_drawn_from_is_missing_in_backtest_and_replay_alike(tiny_run, tmp_path, caplog):
    from botter.cli.backtest import backtest as _backtest

    eth = load_sample(SYMBOL).loc[:"2018-01-14T23:55"].copy()
    start = runs.open_run(tiny_run).test_period(SYMBOL)[0]
    bad = eth.index[eth.index.get_loc(start) + 30]  # the store keeps it (outside_range: flag)
    eth.loc[bad, "open"] = eth.loc[bad, "high"] * 1.01
    append_store(store_path(tmp_path / "data", "binance", SYMBOL, "5m"), eth)
    common = [f"run_dir={tiny_run}", f"paths.data_dir={tmp_path / 'data'}", "name=bad-candle",
              *(f"backtest.{k}={v}" for k, v in settings(tiny_run).items())]
    with caplog.at_level("WARNING", logger="botter.dataset"):
        result = _backtest(compose("backtest", [*common, "data=store", f"data.symbols=[{SYMBOL}]",
                                                f"period.start='{start:%Y-%m-%dT%H:%M}'"]))[SYMBOL]
        _paper(compose("paper", [*common, f"symbol={SYMBOL}", "progress=false", "feed.source=store"]))
    assert f"{SYMBOL}: 1 candle no chart can be drawn from (first at {bad}" in caplog.text
    ledger = tables(session.paper_dir(tiny_run, "bad-candle") / "ledger.sqlite")
    assert bad not in set(ledger["bars"]["time"]) and bad not in result.equity.index
    assert len(result.trades) > 3
    assert_same_fills(ledger["fills"], expected_fills(result, eth.drop(bad).loc[result.equity.index]))
