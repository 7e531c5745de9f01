"""Backtest engine vs the plain per-candle reference loop of the same rules, on the same candles.

    .venv/bin/python scripts/bench_backtest.py [--candles 1000000]

Checks that both give the same equity curve and trades, then prints candles per second for each and
the ratio. "engine" is botter.backtest's simulation (equity and trades as arrays: what the loop
computes); "backtest()" is the whole public call (also frames and statistics). Engine times are the
best of 3 runs (the machine is shared); the loop runs once. The reference loop is the executable
spec kept in tests/test_backtest.py (one copy).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from botter.backtest import _simulate, backtest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_backtest import reference_loop

COSTS = {"fee": 0.001, "slippage_bps": 2.0, "size": 0.5, "cash": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=1_000_000)
    n = parser.parse_args().candles

    rng = np.random.default_rng(0)
    close = 0.05 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))  # a 5-minute random walk
    open_ = np.concatenate([[close[0]], close[:-1]]) * (1 + rng.normal(0, 0.0002, n))
    index = pd.date_range("2020-01-01", periods=n, freq="5min", tz="UTC", name="time")
    candles = pd.DataFrame({"open": open_, "high": np.maximum(open_, close), "low": np.minimum(open_, close),
                            "close": close, "volume": 1.0}, index=index)
    # Targets that last ~20 candles, like a thresholded model signal.
    target = np.repeat(rng.integers(-1, 2, n // 20 + 1), 20)[:n]

    held = np.concatenate([[0], target[:-1]]).astype(np.int8)
    engine_s = best_of(3, lambda: _simulate(open_, close, held, **COSTS))
    full_s = best_of(3, lambda: backtest(candles, target, **COSTS))
    t0 = time.perf_counter()
    equity, trades = reference_loop(open_, close, target, **COSTS)
    loop_s = time.perf_counter() - t0
    result = backtest(candles, target, **COSTS)

    np.testing.assert_allclose(result.equity.to_numpy(), equity, rtol=1e-9)
    got = result.trades[["EntryBar", "Size", "EntryPrice", "ExitBar", "ExitPrice", "Fees", "PnL"]]
    np.testing.assert_allclose(got.to_numpy(float), np.array([t[:7] for t in trades], dtype=float), rtol=1e-9,
                               atol=1e-12)
    assert result.trades["ExitReason"].tolist() == [t[7] for t in trades]
    print(f"{n:,} candles, {len(trades):,} trades: engine and reference loop agree "
          f"(equity rtol 1e-9, every trade)")
    print(f"engine          {n / engine_s:14,.0f} candles/s  ({engine_s:.3f} s)")
    print(f"backtest()      {n / full_s:14,.0f} candles/s  ({full_s:.3f} s, frames and statistics included)")
    print(f"reference loop  {n / loop_s:14,.0f} candles/s  ({loop_s:.3f} s)")
    print(f"ratio           {loop_s / engine_s:14.1f}x engine, {loop_s / full_s:.1f}x backtest()")


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


if __name__ == "__main__":
    main()
