"""What the paper-trading tests share: the shipped settings with thresholds that make the tiny run
trade, reading and comparing ledgers (also while another process writes them), trading a feed into a
ledger, the paper command line, and waiting for a trading process with a guard against a hang."""

import sqlite3
import sys
import time

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from botter import inference, runs
from botter.cli import signal_settings
from botter.config import compose
from botter.paper import loop, session
from botter.paper.ledger import NAMES, Ledger

SYMBOL = "ETH/BTC"
REPLAY = {"name": "replay", "start": None, "end": None, "pace": 0.0}


POLICY = OmegaConf.to_container(compose("paper").validate)  # the shipped validation policy


def settings(run, **changes) -> dict:
    """The shipped backtest settings (configs/backtest/default.yaml: size 1, fee 0.1 %, min_hold the
    run's horizon) with thresholds that make the tiny model trade often; `changes` override them."""
    p = pd.read_parquet(run / "predictions.parquet")
    shipped = signal_settings(OmegaConf.to_container(compose("backtest").backtest), runs.open_run(run).config["data"]
                              ["horizon"])
    return {**shipped, "threshold_up": float(np.quantile(p["p_up"], 0.6)),
            "threshold_down": float(np.quantile(p["p_down"], 0.6)), **changes}


def tables(path) -> dict[str, pd.DataFrame]:
    """Every table of the ledger at `path` but its settings."""
    with Ledger(path, readonly=True) as ledger:
        return {name: ledger.table(name) for name in NAMES if name != "meta"}


def assert_same_ledger(path, want: dict[str, pd.DataFrame]) -> None:
    """The ledger at `path` holds exactly the tables `want` (as `tables` reads them)."""
    got = tables(path)
    for name, table in want.items():
        pd.testing.assert_frame_equal(got[name], table, check_exact=True)


def bars(path) -> tuple[int, int]:
    """(number of candles, open time in ms of the newest or -1) in the ledger at `path`, read while
    another process may be writing it; (0, -1) before it exists."""
    if not path.exists():
        return 0, -1
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT count(*), coalesce(max(time), -1) FROM bars").fetchone()
    except sqlite3.OperationalError:
        return 0, -1  # the schema is not written yet
    finally:
        db.close()


def trade_into(run_dir, path, feed, images: list | None = None, symbols=(SYMBOL,), **changes) -> int:
    """Trade the run's model with `settings(run_dir, **changes)` on `feed` (a botter.paper.feeds feed)
    into the ledger at `path`, resuming it; the number of candle times traded. `images` gets the
    number of charts each model call read."""
    predictor = inference.load(runs.open_run(run_dir))
    if images is not None:
        predictor.models[0].register_forward_hook(lambda module, args, out: images.append(len(args[0])))
    bt = settings(run_dir, **changes)
    with Ledger(path, {"symbols": list(symbols), **bt}) as ledger, session.torch_threads(1):
        traders = loop.resume(ledger, predictor, list(symbols), signals={k: bt[k] for k in session.SIGNAL_KEYS},
                              **{k: bt[k] for k in session.COST_KEYS})
        return loop.run(feed, traders, ledger)


def paper_cli(run, name, *args) -> list[str]:
    """The botter-paper command line with `settings(run)`."""
    bt = settings(run)
    return [sys.executable, "-c", "from botter.cli.paper import main; main()", f"run_dir={run}", f"name={name}",
            "progress=false", *(f"backtest.{k}={v}" for k, v in bt.items()), *args]


def wait_for_bars(path, n: int, proc, timeout: float = 60.0) -> int:
    """Wait until the ledger at `path` holds `n` candles or `proc` (a subprocess.Popen or a
    multiprocessing.Process writing it) has ended; the number it holds. After `timeout` s it kills
    `proc` and fails the test: a guard against a hang, not a speed check."""
    running = proc.is_alive if hasattr(proc, "is_alive") else lambda: proc.poll() is None
    deadline = time.monotonic() + timeout
    while (count := bars(path)[0]) < n and running():
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path} did not reach {n} candles in {timeout:.0f} s: it holds {count}")
        time.sleep(0.002)
    return count
