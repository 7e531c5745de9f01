"""Market data: shipped samples, the local candle store, ccxt fetching, CSV import, validation.

Every loader returns Candles frames (see botter.data.candles): UTC open-time index `time`,
float64 columns open, high, low, close, volume.
"""

import pandas as pd

from botter.data.candles import between
from botter.data.samples import load_sample, sample_symbols
from botter.errors import BotterError

__all__ = ["load", "load_sample", "sample_symbols"]


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
    `params` go to the planted generator (`botter.data.planted.planted_candles`).
    Returns {symbol: Candles frame} in the order of `symbols`.
    """
    if source == "sample":
        return {s: between(load_sample(s, timeframe), start, end) for s in symbols}
    if source == "planted":
        from botter.data.planted import planted_candles

        return {s: between(planted_candles(**params), start, end) for s in symbols}
    raise BotterError(f"data.source={source!r} is not one of: sample, store, planted")
