"""Paper trading: decision latency per candle (window render + inference + signals + ledger write).

    .venv/bin/python scripts/bench_paper.py [--candles 1000] [--model small] [--render ohlc]

The model is botter-train's (`model=small` on `render=ohlc` by default) with untrained weights: the
latency does not depend on them. Each candle goes through the paper loop's own Trader.step and
Ledger.record on the ETH/BTC sample. Two things in one run on the same candles: torch on one
thread (botter-paper's default, `threads=1`) against torch's default thread count; prints median and 99th
percentile per candle for both, the ledger write alone, and the ratio. Goal: median under 10 ms.
"""

import argparse
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from botter.config import compose
from botter.data import load_sample
from botter.model import build_model
from botter.paper.broker import Broker
from botter.paper.ledger import Ledger
from botter.paper.loop import Trader
from botter.paper.session import COST_KEYS, SIGNAL_KEYS, torch_threads


def latencies(model, info, candles, bt, ledger_path) -> tuple[np.ndarray, np.ndarray]:
    """Seconds per candle for the whole decision, and for its ledger write alone."""
    broker = Broker(**{k: bt[k] for k in COST_KEYS})
    trader = Trader(model, info, broker, {k: bt[k] for k in SIGNAL_KEYS})
    rows = np.column_stack([candles.index.as_unit("ms").asi8, candles.to_numpy()]).tolist()
    window = deque(rows[: trader.lookback - 1], maxlen=trader.lookback)
    total, write = [], []
    with Ledger(ledger_path, {"bench": True}) as ledger:
        for row in rows[trader.lookback - 1 :]:
            t0 = time.perf_counter()
            window.append(row)
            step = trader.step(window)
            t1 = time.perf_counter()
            ledger.record(step)
            t2 = time.perf_counter()
            total.append(t2 - t0)
            write.append(t2 - t1)
    return np.array(total), np.array(write)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candles", type=int, default=1000)
    ap.add_argument("--model", default="small")
    ap.add_argument("--render", default="ohlc")
    args = ap.parse_args()

    cfg = OmegaConf.to_container(compose("train", [f"model={args.model}", f"render={args.render}"]), resolve=True)
    r, d = cfg["render"], cfg["data"]
    model = build_model(**cfg["model"], input_hw=(r["height"], r["width"])).eval()
    info = {"render": r, "window": d["window"], "classes": d["classes"], "timeframe": d["timeframe"]}
    candles = load_sample("ETH/BTC").iloc[: args.candles]
    default_threads = torch.get_num_threads()
    print(f"paper decision latency, {args.model} on {args.render} {r['channels']}x{r['height']}x{r['width']}, "
          f"{len(candles)} ETH/BTC candles, torch {torch.__version__}, {default_threads} default threads")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up, not measured: torch's and SQLite's first calls set themselves up slowly.
        latencies(model, info, candles.iloc[:100], cfg["backtest"], Path(tmp) / "warm.sqlite")
        with torch_threads(1):
            results["1 thread (paper default)"] = latencies(model, info, candles, cfg["backtest"], Path(tmp) / "a.sqlite")
        results[f"{default_threads} threads (torch default)"] = latencies(
            model, info, candles, cfg["backtest"], Path(tmp) / "b.sqlite")
    for name, (total, write) in results.items():
        print(f"  {name:<28} median {np.median(total) * 1e3:6.2f} ms  p99 {np.percentile(total, 99) * 1e3:6.2f} ms"
              f"   (ledger write: median {np.median(write) * 1e3:.2f} ms, p99 {np.percentile(write, 99) * 1e3:.2f} ms)")
    (one, _), (default, _) = results.values()
    print(f"ratio default threads / one thread (median): {np.median(default) / np.median(one):.2f}x; "
          f"goal median < 10 ms: {'met' if np.median(one) < 0.010 else 'NOT met'}")


if __name__ == "__main__":
    main()
