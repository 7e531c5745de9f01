"""The real Binance 5m candles shipped inside the package: usable with no network and no fetch."""

from importlib import resources

import pandas as pd

from botter.data.csvfile import read_csv_candles
from botter.errors import BotterError


def _sample_files() -> dict[tuple[str, str], object]:
    # binance_ETH-BTC_5m.csv -> ("ETH/BTC", "5m")
    files = {}
    for f in resources.files("botter.data").joinpath("samples").iterdir():
        if f.name.startswith("binance_") and f.name.endswith(".csv"):
            pair, timeframe = f.name[len("binance_") : -len(".csv")].rsplit("_", 1)
            files[(pair.replace("-", "/"), timeframe)] = f
    return files


def sample_symbols() -> list[str]:
    """The symbols that have a shipped sample, like "ETH/BTC"."""
    return sorted({symbol for symbol, _ in _sample_files()})


def load_sample(symbol: str, timeframe: str = "5m") -> pd.DataFrame:
    """Load a shipped sample as a Candles frame (UTC open times; prices in the quote currency).

    >>> load_sample("ETH/BTC").shape
    (5760, 5)
    """
    files = _sample_files()
    if (symbol, timeframe) not in files:
        have = ", ".join(f"{s} {t}" for s, t in sorted(files))
        raise BotterError(f"no shipped sample for {symbol} {timeframe}; samples are: {have}")
    with resources.as_file(files[(symbol, timeframe)]) as path:
        return read_csv_candles(path, timeframe)[0]
