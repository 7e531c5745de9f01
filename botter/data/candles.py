"""The Candles frame every stage passes around, and the few helpers that build and slice it.

A Candles frame: index `time` (tz-aware UTC DatetimeIndex of candle OPEN times, sorted, unique),
float64 columns open, high, low, close, volume. The candle at t is known at its close, t + timeframe.

Candles open on their timeframe's grid, as exchanges draw it: minutes, hours and days counted from
00:00 UTC (a day candle opens at midnight UTC; 3d and the like count from 1970-01-01), weeks from
Monday 00:00 UTC, months (1M) on the 1st at 00:00 UTC, years on January 1st. `slot` numbers the
grid, `slot_open` gives each slot's open time.
"""

import re

import numpy as np
import pandas as pd

from botter.errors import BotterError

COLUMNS = ["open", "high", "low", "close", "volume"]
TIMEFRAME = re.compile(r"([1-9][0-9]*)([smhdwMy])")
UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
# 1970-01-01 was a Thursday: weeks are counted from Monday 1970-01-05.
MONDAY_MS = 4 * 86_400_000
# Open times botter takes: 1900-01-01 to 9999-12-31 (a date outside is a typo or a wrong unit).
FIRST_MS, END_MS = -2_208_988_800_000, 253_402_300_800_000


def _parse(timeframe: str) -> tuple[int, str]:
    m = TIMEFRAME.fullmatch(str(timeframe))
    if m is None:
        raise BotterError(f"timeframe {timeframe!r} is not a timeframe like 1m, 5m, 1h, 1d, 1w, 1M: a whole number "
                          "above 0 and a unit (s, m, h, d, w, M for months, y)")
    return int(m[1]), m[2]


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
    """Length of one candle in milliseconds ("5m" -> 300000); months and years at their nominal 30
    and 365 days (ccxt's), though on the grid they are calendar months and years."""
    n, unit = _parse(timeframe)
    return n * {"M": 30 * UNIT_MS["d"], "y": 365 * UNIT_MS["d"]}.get(unit, UNIT_MS.get(unit, 0))


def is_calendar(timeframe: str) -> bool:
    """Whether the timeframe's candles are a day or longer (their grid is the calendar's)."""
    return _parse(timeframe)[1] in "dwMy"


def _months(timeframe: str) -> int:
    n, unit = _parse(timeframe)
    return n * 12 if unit == "y" else n if unit == "M" else 0


def slot(ms, timeframe: str) -> np.ndarray:
    """The number of the grid slot each open time (epoch ms) falls in, int64: a candle is on the
    grid where slot_open(slot(t)) == t, and two on-grid candles are consecutive where their slots are."""
    ms = np.asarray(ms, dtype=np.int64)
    months = _months(timeframe)
    if months:
        return ms.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64) // months
    origin = MONDAY_MS if _parse(timeframe)[1] == "w" else 0
    return (ms - origin) // timeframe_ms(timeframe)


def slot_open(k, timeframe: str) -> np.ndarray:
    """The open time (epoch ms, int64) of grid slot `k` (see `slot`)."""
    k = np.asarray(k, dtype=np.int64)
    months = _months(timeframe)
    if months:
        return (k * months).astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)
    origin = MONDAY_MS if _parse(timeframe)[1] == "w" else 0
    return origin + k * timeframe_ms(timeframe)


def on_grid(ms, timeframe: str) -> np.ndarray:
    """Which open times (epoch ms) lie on the timeframe's grid."""
    ms = np.asarray(ms, dtype=np.int64)
    return slot_open(slot(ms, timeframe), timeframe) == ms


def next_open(ms, timeframe: str) -> np.ndarray:
    """The open time after each time's slot: a candle's close (epoch ms, int64)."""
    return slot_open(slot(ms, timeframe) + 1, timeframe)


def from_rows(rows) -> pd.DataFrame:
    """Build a Candles frame from ccxt OHLCV rows [open time ms, open, high, low, close, volume].

    Rows are kept in the order given (duplicates and disorder are for `validate` to report); a
    missing value (None) becomes NaN. A row without an open time, or with one outside 1900..9999,
    raises BotterError.
    """
    a = np.asarray(rows, dtype="float64").reshape(-1, 6)
    bad = ~((a[:, 0] >= FIRST_MS) & (a[:, 0] < END_MS))  # NaN compares False
    if bad.any():
        what = "no open time" if np.isnan(a[bad][0, 0]) else "an open time outside the years 1900 to 9999"
        raise BotterError(f"a candle row has {what}: {a[bad][0].tolist()}")
    times = a[:, 0].astype("int64").astype("datetime64[ms]")
    index = pd.DatetimeIndex(times, name="time").tz_localize("UTC")
    return pd.DataFrame(a[:, 1:], index=index, columns=COLUMNS)


# Epoch numbers given as times, by their digits: seconds or milliseconds since 1970 (from 2001 on).
EPOCH_DIGITS = {10: 1000, 13: 1}


def to_ms(t) -> int:
    """A time as UTC epoch milliseconds: text like "2024-01-01", "2024-01-01T12:00" or "20240101", a
    datetime, or an epoch number in seconds (10 digits) or milliseconds (13 digits), as int or text.
    Anything else raises BotterError saying how to write it."""
    if isinstance(t, (bool, np.bool_)):
        t = str(t)
    if isinstance(t, (int, np.integer)) or (isinstance(t, str) and t.strip().isdigit()):
        digits = str(t).strip()
        if len(digits) in EPOCH_DIGITS:
            return int(digits) * EPOCH_DIGITS[len(digits)]
        if len(digits) != 8:  # 8 digits: a date like 20240101
            raise BotterError(f"cannot read {t!r} as a time: write a date like 2024-01-01 (or 20240101), "
                              "2024-01-01T12:00, or epoch seconds (10 digits) or milliseconds (13 digits)")
        t = digits
    try:
        ts = pd.Timestamp(t)
        if ts is pd.NaT:
            raise ValueError("no time")
    except (ValueError, TypeError, OverflowError) as e:
        raise BotterError(f"cannot read {t!r} as a time: write it like 2024-01-01 or 2024-01-01T12:00") from e
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.as_unit("ms").asm8.astype("int64"))


def between(df: pd.DataFrame, start=None, end=None) -> pd.DataFrame:
    """Candles with open time in [start, end) (either bound may be None)."""
    if start is not None:
        df = df[df.index.as_unit("ms").asi8 >= to_ms(start)]
    if end is not None:
        df = df[df.index.as_unit("ms").asi8 < to_ms(end)]
    return df
