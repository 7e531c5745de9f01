"""Paper trading: decision latency per candle (window render + inference + signals + ledger write),
and whether it grows with the ledger.

    .venv/bin/python scripts/bench_paper.py [--candles 1000] [--model small] [--render ohlc] [--history 100000]

The model is botter-train's (`model=small` on `render=ohlc` by default) with untrained weights: the
latency does not depend on them. Each candle goes through the paper loop's own Trader.step and
Ledger.record at the shipped backtest settings.

1. On the ETH/BTC sample: torch on one thread (botter-paper's default, `threads=1`) against torch's
   default thread count; median and 99th percentile per candle for both, the ledger write alone,
   and their ratio. Goal: median under 10 ms.
2. Against the ledger's length: a ledger already holding `--history` candles (written through
   Ledger.record, synthetic candles) and one holding 100, each resumed by the loop's own `resume`;
   decisions on both, interleaved so that both see the same load, medians after a warm-up. Goal: the
   last line, `decision latency at candle 100,000 / candle 100: <R>x`, with R <= 1.2.
"""

import argparse
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from botter.cli import signal_settings
from botter.config import compose
from botter.data import load_sample
from botter.inference import Predictor
from botter.model import build_model
from botter.paper import loop
from botter.paper.ledger import Ledger, Step
from botter.paper.session import COST_KEYS, SIGNAL_KEYS, torch_threads

SYMBOL = "ETH/BTC"


def rows_of(candles: pd.DataFrame) -> list[list]:
    """ccxt rows [open time ms, open, high, low, close, volume]."""
    return np.column_stack([candles.index.as_unit("ms").asi8, candles.to_numpy()]).tolist()


def synthetic(n: int) -> list[list]:
    """n valid 5m candles of a random walk, as ccxt rows."""
    rng = np.random.default_rng(0)
    close = 0.1 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[0.1, close[:-1]]
    spread = np.abs(rng.normal(0, 0.001, n)) * close
    times = pd.date_range("2018-01-01", periods=n, freq="5min", tz="UTC")
    return rows_of(pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + spread,
                                 "low": np.minimum(open_, close) - spread, "close": close,
                                 "volume": rng.uniform(1, 100, n)}, index=times))


def fill(ledger: Ledger, rows: list[list]) -> None:
    """Record `rows` as flat candles through the ledger's own code, one transaction each."""
    for row in rows:
        ledger.record([Step(symbol=SYMBOL, candle=row, fill=None, position=0.0, side=0, cash=1.0, equity=1.0,
                            probs={"p_down": 0.5, "p_up": 0.5}, target=0)])


def decide(traders, ledger, window, row) -> tuple[float, float]:
    """One decision as the loop makes it: (seconds in all, seconds of the ledger write)."""
    t0 = time.perf_counter()
    window.append(row)
    step = traders[SYMBOL].step(window)
    t1 = time.perf_counter()
    ledger.record([step])
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1


def latencies(predictor, rows, bt, ledger_path) -> tuple[np.ndarray, np.ndarray]:
    """Seconds per candle for the whole decision, and for its ledger write alone, on a new ledger."""
    window = deque(rows[: predictor.lookback - 1], maxlen=predictor.lookback)
    with Ledger(ledger_path, {"symbols": [SYMBOL], **bt}) as ledger:
        traders = loop.resume(ledger, predictor, [SYMBOL], signals={k: bt[k] for k in SIGNAL_KEYS},
                              **{k: bt[k] for k in COST_KEYS})
        times = [decide(traders, ledger, window, row) for row in rows[predictor.lookback - 1:]]
    return tuple(np.array(x) for x in zip(*times))


def against_history(predictor, bt, history: int, decisions: int, folder: Path) -> dict[str, np.ndarray]:
    """Seconds per decision on a ledger holding 100 candles and on one holding `history`, interleaved
    (alternately one first, then the other, so that neither always runs on a warmer cache)."""
    warm = 50
    rows = synthetic(history + warm + decisions)
    t0 = time.perf_counter()
    with Ledger(folder / "long.sqlite", {"symbols": [SYMBOL], **bt}) as ledger:
        fill(ledger, rows[:history])
    took = time.perf_counter() - t0
    print(f"a ledger of {history:,} candles written through Ledger.record in {took:.1f} s "
          f"({took / history * 1e6:.0f} us a candle)")
    with Ledger(folder / "short.sqlite", {"symbols": [SYMBOL], **bt}) as ledger:
        fill(ledger, rows[:100])
    runs = {}
    for label, name, at in (("at candle 100", "short.sqlite", 100), (f"at candle {history:,}", "long.sqlite", history)):
        ledger = Ledger(folder / name, {"symbols": [SYMBOL], **bt})
        traders = loop.resume(ledger, predictor, [SYMBOL], signals={k: bt[k] for k in SIGNAL_KEYS},
                              **{k: bt[k] for k in COST_KEYS})
        window = deque(rows[at - predictor.lookback + 1: at], maxlen=predictor.lookback)
        runs[label] = (ledger, traders, window, iter(rows[at:]), [])
    try:
        for k in range(warm + decisions):
            for ledger, traders, window, upcoming, out in list(runs.values())[:: 1 - 2 * (k % 2)]:  # ABBA...
                total, _ = decide(traders, ledger, window, next(upcoming))
                if k >= warm:  # torch's and SQLite's first calls set themselves up slowly
                    out.append(total)
    finally:
        for ledger, *_ in runs.values():
            ledger.close()
    return {label: np.array(run[-1]) for label, run in runs.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candles", type=int, default=1000)
    ap.add_argument("--model", default="small")
    ap.add_argument("--render", default="ohlc")
    ap.add_argument("--history", type=int, default=100_000, help="candles in the long ledger")
    ap.add_argument("--decisions", type=int, default=300, help="decisions timed on each ledger")
    args = ap.parse_args()

    cfg = OmegaConf.to_container(compose("train", [f"model={args.model}", f"render={args.render}"]), resolve=True)
    r, d = cfg["render"], cfg["data"]
    model = build_model(**cfg["model"], input_hw=(r["height"], r["width"])).eval()
    predictor = Predictor([model], {"render": r, "window": d["window"], "horizon": d["horizon"],
                                    "classes": d["classes"], "timeframe": d["timeframe"]})
    bt = signal_settings(cfg["backtest"], d["horizon"])
    bt |= {"threshold_up": 0.5, "threshold_down": 0.5}  # an untrained model hovers at 0.5: it trades
    rows = rows_of(load_sample(SYMBOL).iloc[: args.candles])
    default_threads = torch.get_num_threads()
    print(f"paper decision latency, {args.model} on {args.render} {r['channels']}x{r['height']}x{r['width']}, "
          f"{len(rows)} {SYMBOL} candles, torch {torch.__version__}, {default_threads} default threads")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up, not measured: torch's and SQLite's first calls set themselves up slowly.
        latencies(predictor, rows[:100], bt, Path(tmp) / "warm.sqlite")
        with torch_threads(1):
            results["1 thread (paper default)"] = latencies(predictor, rows, bt, Path(tmp) / "a.sqlite")
        results[f"{default_threads} threads (torch default)"] = latencies(predictor, rows, bt, Path(tmp) / "b.sqlite")
        for name, (total, write) in results.items():
            print(f"  {name:<28} median {np.median(total) * 1e3:6.2f} ms  p99 {np.percentile(total, 99) * 1e3:6.2f} ms"
                  f"   (ledger write: median {np.median(write) * 1e3:.2f} ms, p99 {np.percentile(write, 99) * 1e3:.2f} ms)")
        (one, _), (default, _) = results.values()
        print(f"ratio default threads / one thread (median): {np.median(default) / np.median(one):.2f}x; "
              f"goal median < 10 ms: {'met' if np.median(one) < 0.010 else 'NOT met'}")
        with torch_threads(1):
            by_length = against_history(predictor, bt, args.history, args.decisions, Path(tmp))
    for label, total in by_length.items():
        print(f"  {label:<28} median {np.median(total) * 1e3:6.2f} ms  p99 {np.percentile(total, 99) * 1e3:6.2f} ms"
              f"   ({len(total)} decisions, interleaved)")
    short, long_ = (np.median(t) for t in by_length.values())
    print(f"decision latency at candle {args.history:,} / candle 100: {long_ / short:.2f}x")


if __name__ == "__main__":
    main()
