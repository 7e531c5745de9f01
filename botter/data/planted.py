"""Synthetic candles with a planted, visible signal: proof that the pipeline learns what is there.

The candles come in episodes of `ma - 1 + window + horizon + 1` consecutive candles, one missing
candle between episodes: a gap, so each episode has exactly one labelled window, the one ending at
the pattern (the `ma - 1` candles before it feed the renderer's moving average); the `horizon + 1`
windows after it are decided on too, but their label would read across the gap. The episodes make
one random walk (`noise`) in which the last `pattern` candles of each window draw a V (down then up
by `depth` per candle) before an up move, or its mirror, an inverted V, before a down move; the move
lasts the `horizon + 1` candles after the window (`move` per candle, plus noise). The V's net change
is zero, so the window's own return says nothing of the label.
"""

import numpy as np
import pandas as pd

from botter.data.candles import timeframe_ms
from botter.errors import BotterError


def planted_candles(
    *,
    episodes: int = 1500,
    window: int = 20,
    horizon: int = 5,
    ma: int | None = None,
    timeframe: str = "5m",
    pattern: int = 6,
    noise: float = 0.002,
    depth: float = 0.006,
    move: float = 0.004,
    seed: int = 0,
    start: str = "2020-01-01",
) -> pd.DataFrame:
    """A Candles frame of `episodes` planted episodes (see the module docstring).

    ma: the renderer's moving-average length in candles (render.ma), or None for none.
    noise, depth, move: per-candle log returns (0.002 = 0.2%). pattern: candles of the V (even,
    at most window). seed: the random generator's seed (same seed, same candles).
    """
    if pattern % 2 or not 2 <= pattern <= window:
        raise BotterError(f"data.params.pattern={pattern} must be even and at most data.window={window}")
    rng = np.random.default_rng(seed)
    history = max((ma or 1) - 1, 0)
    length = history + window + horizon + 1
    end = history + window  # candles up to and including the window's last
    up = rng.random(episodes) < 0.5  # (E,) direction of each episode's move
    half = pattern // 2
    v = np.r_[np.full(half, -depth), np.full(half, depth)]  # V: the mirror precedes a down move
    drift = np.zeros((episodes, length))
    drift[:, end - pattern : end] = np.where(up[:, None], v, -v)
    drift[:, end:] = np.where(up, move, -move)[:, None]
    steps = drift + rng.normal(0, noise, (episodes, length))  # (E, L) log return of each candle
    # One price path: an episode opens at the close before its missing candle, so a position held
    # across that gap sees an ordinary move, not a jump to another price level.
    close = np.exp(np.cumsum(steps.ravel())).reshape(episodes, length)  # (E, L)
    open_ = np.r_[1.0, close.ravel()[:-1]].reshape(episodes, length)
    wick = np.exp(np.abs(rng.normal(0, noise / 2, (2, episodes, length))))
    high = np.maximum(open_, close) * wick[0]
    low = np.minimum(open_, close) / wick[1]
    volume = rng.lognormal(3, 0.3, (episodes, length))
    slot = np.arange(episodes)[:, None] * (length + 1) + np.arange(length)  # one missing candle between episodes
    times = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(slot.ravel() * timeframe_ms(timeframe), unit="ms")
    index = pd.DatetimeIndex(times, name="time")
    columns = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    return pd.DataFrame({k: v.ravel() for k, v in columns.items()}, index=index)
