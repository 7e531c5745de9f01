"""Synthetic candles and window datasets for the scale benchmarks (bench_scale.py, bench_gpu.py).

Random-walk 5m candles with no gap, so `n` candles of one symbol give about `n` windows; nothing to
learn in them, which does not matter for memory or speed.
"""

import numpy as np
import pandas as pd

from botter import dataset

RENDER = {"name": "ohlc", "height": 64, "width": 60, "channels": 1, "ma": 20, "volume": True}


def random_candles(n: int, seed: int = 0, start: str = "2020-01-01") -> pd.DataFrame:
    """A Candles frame of `n` 5-minute random-walk candles."""
    rng = np.random.default_rng(seed)
    close = np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.r_[1.0, close[:-1]]
    wick = np.exp(np.abs(rng.normal(0, 0.001, (2, n))))
    index = pd.date_range(start, periods=n, freq="5min", tz="UTC", name="time").as_unit("ms")
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) * wick[0],
                         "low": np.minimum(open_, close) / wick[1], "close": close,
                         "volume": rng.lognormal(3, 0.5, n)}, index=index)


def windows(total: int, symbols: int = 10, render: dict = RENDER) -> dataset.Windows:
    """About `total` labelled windows (window 20, horizon 5) over `symbols` random-walk symbols,
    charts drawn per batch (nothing rendered here)."""
    per = total // symbols + 39 + 5
    candles = {f"S{i}/BTC": random_candles(per, seed=i) for i in range(symbols)}
    return dataset.build(candles, window=20, horizon=5, classes=2, timeframe="5m", render=render,
                         progress=False).labelled()
