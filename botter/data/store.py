"""The local candle store: one Parquet file per (exchange, symbol, timeframe), keyed by open time.

Named like freqtrade's data folder: `<data_dir>/<exchange>/<BASE_QUOTE>-<timeframe>.parquet`.
Every write replaces the whole file atomically, so a reader (or a run killed mid-way) sees the
old file or the new one, never half of one.
"""

import os
from pathlib import Path

import pandas as pd

from botter.atomic import atomic_path
from botter.data.candles import COLUMNS, between
from botter.errors import BotterError


def store_path(data_dir: str | os.PathLike, exchange: str, symbol: str, timeframe: str) -> Path:
    """Where the candles of one market live: "BTC/USDT:USDT" -> <data_dir>/<exchange>/BTC_USDT_USDT-1h.parquet."""
    name = symbol.replace("/", "_").replace(":", "_")
    return Path(data_dir) / exchange / f"{name}-{timeframe}.parquet"


def read_store(path: Path) -> pd.DataFrame:
    """The stored candles at `path`, or an empty Candles frame where there is no file yet."""
    if not path.exists():
        index = pd.DatetimeIndex([], dtype="datetime64[ms, UTC]", name="time")
        return pd.DataFrame({c: pd.Series([], dtype="float64") for c in COLUMNS}, index=index)
    return pd.read_parquet(path)


def append_store(path: Path, candles: pd.DataFrame, *, stored: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add `candles` (a clean Candles frame) to the file at `path` in one atomic write.

    Candles already stored win over new ones at the same open time, so re-fetching or
    re-importing a range changes nothing. `stored`: the file's frame where the caller holds it
    already (saves reading it again). Returns the whole stored frame.
    """
    old = read_store(path) if stored is None else stored
    new = candles[~candles.index.isin(old.index)]
    if len(new) == 0:
        return old
    merged = pd.concat([old, new.astype("float64")]).sort_index(kind="stable")
    merged.index = merged.index.as_unit("ms").rename("time")
    with atomic_path(path) as tmp:
        merged.to_parquet(tmp)
    return merged


def load_candles(exchange: str, symbol: str, timeframe: str, *, start=None, end=None, data_dir) -> pd.DataFrame:
    """Load stored candles with open time in [start, end) as a Candles frame.

    start/end: text like "2024-01-01", a datetime, or epoch ms; None for no bound.
    Raises BotterError when nothing is stored for the market (and says how to fetch it).
    """
    path = store_path(data_dir, exchange, symbol, timeframe)
    if not path.exists():
        raise BotterError(
            f"no candles stored for {exchange} {symbol} {timeframe} in {path.parent}: run "
            f"`botter-fetch exchange.id={exchange} symbol={symbol} timeframe={timeframe} since=YYYY-MM-DD` first"
        )
    return between(read_store(path), start, end)
