"""The Candles frame every stage passes around, and the few helpers that build and slice it.

A Candles frame: index `time` (tz-aware UTC DatetimeIndex of candle OPEN times, sorted, unique),
float64 columns open, high, low, close, volume. The candle at t is known at its close, t + timeframe.
"""

import re

import ccxt
import numpy as np
import pandas as pd

from botter.errors import BotterError

COLUMNS = ["open", "high", "low", "close", "volume"]
# ccxt's unified symbol: BASE/QUOTE, or BASE/QUOTE:SETTLE for a derivative. No _ inside a part, so
# that the store file name (BASE_QUOTE) names one market only.
SYMBOL = re.compile(r"[A-Za-z0-9.-]+/[A-Za-z0-9.-]+(:[A-Za-z0-9.-]+)?")


def check_symbol(symbol) -> str:
    """`symbol` where it is spelt as ccxt spells a market (BASE/QUOTE, like ETH/BTC), else BotterError:
    ETH_BTC or ETH:BTC would read the same store file as ETH/BTC under another name."""
    if isinstance(symbol, str) and SYMBOL.fullmatch(symbol):
        return symbol
    raise BotterError(f"symbol {symbol!r} is not spelt BASE/QUOTE: write it as the exchange's unified symbol, "
                      "like ETH/BTC (or BTC/USDT:USDT for a derivative)")


def timeframe_ms(timeframe: str) -> int:
    """Length of one candle in milliseconds ("5m" -> 300000)."""
    try:
        return int(ccxt.Exchange.parse_timeframe(timeframe)) * 1000
    except Exception as e:
        raise BotterError(f"timeframe {timeframe!r} is not a timeframe like 1m, 5m, 1h, 1d: {e}") from e


def from_rows(rows) -> pd.DataFrame:
    """Build a Candles frame from ccxt OHLCV rows [open time ms, open, high, low, close, volume].

    Rows are kept in the order given (duplicates and disorder are for `validate` to report); a
    missing value (None) becomes NaN. A row without an open time raises BotterError.
    """
    a = np.asarray(rows, dtype="float64").reshape(-1, 6)
    if not np.isfinite(a[:, 0]).all():
        raise BotterError(f"a candle row has no open time: {a[~np.isfinite(a[:, 0])][0].tolist()}")
    index = pd.DatetimeIndex(pd.to_datetime(a[:, 0].astype("int64"), unit="ms", utc=True), name="time").as_unit("ms")
    return pd.DataFrame(a[:, 1:], index=index, columns=COLUMNS)


def to_ms(t) -> int:
    """A time (text like "2024-01-01", a datetime, or epoch ms as int) as UTC epoch milliseconds."""
    if isinstance(t, (int, np.integer)) or (isinstance(t, str) and t.isdigit()):
        return int(t)
    try:
        ts = pd.Timestamp(t)
    except (ValueError, TypeError) as e:
        raise BotterError(f"cannot read {t!r} as a time: write it like 2024-01-01 or 2024-01-01T12:00") from e
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def between(df: pd.DataFrame, start=None, end=None) -> pd.DataFrame:
    """Candles with open time in [start, end) (either bound may be None)."""
    if start is not None:
        df = df[df.index >= pd.Timestamp(to_ms(start), unit="ms", tz="UTC")]
    if end is not None:
        df = df[df.index < pd.Timestamp(to_ms(end), unit="ms", tz="UTC")]
    return df
