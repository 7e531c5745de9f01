"""Synthetic candles, window datasets and paper ledgers for the scale benchmarks (bench_scale.py,
bench_gpu.py, bench_dashboard.py).

Random-walk 5m candles with no gap, so `n` candles of one symbol give about `n` windows; nothing to
learn in them, which does not matter for memory or speed.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from botter import dataset
from botter.paper.broker import Broker
from botter.paper.ledger import Ledger, Step

RENDER = {"name": "ohlc", "height": 64, "width": 60, "channels": 1, "ma": 20, "volume": True}
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def model_kwargs(name: str) -> dict:
    """build_model kwargs from configs/model/<name>.yaml for a 1 x 64 x 60 chart (no Hydra needed)."""
    cfg = yaml.safe_load((CONFIGS / "model" / f"{name}.yaml").read_text())
    return {"in_channels": 1, "layers": cfg["layers"], "head": {**cfg["head"], "num_classes": 2},
            "input_hw": [64, 60]}


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


def paper_ledger(path, n: int, seed: int = 0, hold: int = 12) -> Path:
    """A paper ledger at `path` of `n` random-walk 5m candles, traded by the paper broker on random
    targets (-1, 0, 1) held for `hold` candles on average, with random probabilities; no model, so
    it is made at the speed of the ledger writes (botter.paper.ledger.Ledger.record, one per candle)."""
    rng = np.random.default_rng(seed)
    candles = random_candles(n, seed)
    rows = np.column_stack([candles.index.asi8, candles.to_numpy()])
    targets = rng.integers(-1, 2, n).astype(np.float64)
    targets[rng.random(n) >= 1 / hold] = np.nan  # kept from the candle before
    targets = pd.Series(targets).ffill().fillna(0).astype(int).to_numpy()
    p_up = rng.random(n)
    costs = {"cash": 1000.0, "fee": 0.001, "slippage_bps": 5.0, "size": 1.0}
    meta = {"symbols": ["SYN/BTC"], "timeframe": "5m", "feed": "replay", "sample": "out-of-sample", **costs}
    broker = Broker(**costs)
    pending = None
    with Ledger(path, meta) as ledger:
        for row, target, p in zip(rows, targets, p_up):
            t = int(row[0])
            fill = None if pending is None else broker.execute(pending[1], row[1], time=t, order_time=pending[0])
            equity = broker.mark(row[4])
            target = 0 if broker.ruined else int(target)
            ledger.record([Step(symbol="SYN/BTC", candle=(t, *row[1:]), fill=fill, position=broker.position,
                                side=broker.side, cash=broker.cash, equity=equity,
                                probs={"p_down": 1 - p, "p_up": p}, target=target)])
            pending = (t, target)
    return Path(path)
