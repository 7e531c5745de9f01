"""Market data: shipped samples, the local candle store, ccxt fetching, CSV import, validation.

Every loader returns Candles frames (see botter.data.candles): UTC open-time index `time`,
float64 columns open, high, low, close, volume.
"""

import pandas as pd

from botter.data.candles import COLUMNS, between, check_symbol, timeframe_ms
from botter.data.samples import load_sample, sample_symbols
from botter.data.store import load_candles, store_path
from botter.data.validate import Report, validate
from botter.errors import BotterError

__all__ = [
    "COLUMNS",
    "Report",
    "load",
    "load_candles",
    "load_config",
    "load_sample",
    "sample_symbols",
    "store_path",
    "timeframe_ms",
    "validate",
]


def load(
    source: str,
    symbols,
    timeframe: str,
    *,
    exchange: str = "binance",
    start=None,
    end=None,
    data_dir=None,
    **params,
) -> dict[str, pd.DataFrame]:
    """Load candles for each symbol from `source` ("sample", "store" or "planted").

    start/end bound the candle open times, [start, end), as text ("2024-01-01") or epoch ms.
    data_dir is the store's folder (paths.data_dir), needed for source="store".
    `params` go to the planted generator (`botter.data.planted.planted_candles`).
    Returns {symbol: Candles frame} in the order of `symbols`. A symbol not spelt BASE/QUOTE
    (`check_symbol`) raises BotterError: another spelling would be the same market under another name.
    """
    if isinstance(symbols, str):
        raise BotterError(f"symbols={symbols!r} must be a list, like [{symbols}]")
    for s in symbols:
        check_symbol(s)
    if source == "sample":
        return {s: between(load_sample(s, timeframe), start, end) for s in symbols}
    if source == "store":
        if data_dir is None:
            raise BotterError("data.source=store needs the store folder: set paths.data_dir")
        return {s: load_candles(exchange, s, timeframe, start=start, end=end, data_dir=data_dir) for s in symbols}
    if source == "planted":
        from botter.data.planted import planted_candles

        return {s: between(planted_candles(timeframe=timeframe, **params), start, end) for s in symbols}
    raise BotterError(f"data.source={source!r} is not one of: sample, store, planted")


def load_config(d: dict, data_dir=None) -> dict[str, pd.DataFrame]:
    """{symbol: candles} for a resolved data config (the keys of configs/data/*.yaml)."""
    return load(d["source"], d["symbols"], d["timeframe"], exchange=d["exchange"], start=d["start"], end=d["end"],
                data_dir=data_dir, **d.get("params", {}))
