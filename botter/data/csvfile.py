"""Read candles from a CSV file: ccxt's headerless order or a header with a date/time column.

Accepted: rows `timestamp_ms, open, high, low, close, volume` with no header, or a header naming
a date/time column (time, timestamp, date, datetime, open_time, ... in any case) and columns
open/high/low/close/volume in any case ("Volume BTC" counts as volume). Times may be text
(UTC unless they carry an offset) or epoch numbers in seconds, milliseconds or microseconds.
"""

import re
from pathlib import Path

import ccxt
import numpy as np
import pandas as pd

from botter.data.candles import COLUMNS, from_rows
from botter.errors import BotterError

TIME_NAMES = ("timestamp", "time", "date", "datetime", "open_time", "opentime", "open time", "date/time", "ts", "unix")
TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")


def _epoch_ms(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(values):
        v = values.to_numpy("float64")
        big = np.nanmax(np.abs(v)) if len(v) else 0
        # Now is ~1.7e9 s, ~1.7e12 ms, ~1.7e15 us: the size says the unit.
        scale = 1e-3 if big > 1e14 else 1.0 if big > 1e11 else 1e3
        return np.round(v * scale).astype("int64")
    try:
        times = pd.to_datetime(values, utc=True, format="mixed")
    except (ValueError, TypeError) as e:
        raise BotterError(f"cannot read the times in the CSV ({e}): use ISO text like 2024-01-01 12:00 or epoch ms") from e
    return times.dt.as_unit("ms").astype("int64").to_numpy()


def _columns(header: list[str], path: Path) -> list[str]:
    names = [h.strip().lower() for h in header]
    time_col = next((header[i] for i, n in enumerate(names) if n in TIME_NAMES), None)
    if time_col is None:
        raise BotterError(f"{path}: no date/time column (one named like {', '.join(TIME_NAMES[:4])}) in the header")
    cols = [time_col]
    for c in COLUMNS:
        found = next((header[i] for i, n in enumerate(names) if n == c or n.startswith(c + " ")), None)
        if found is None:
            raise BotterError(f"{path}: no {c!r} column in the header {header}")
        cols.append(found)
    return cols


def infer_timeframe(ms: np.ndarray) -> str:
    """The timeframe of candles at open times `ms` (epoch ms): their most common spacing."""
    steps = np.diff(np.unique(ms))
    if len(steps) == 0:
        raise BotterError("cannot infer the timeframe from fewer than two candles: give timeframe=")
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[np.argmax(counts)])
    for tf in TIMEFRAMES:
        if ccxt.Exchange.parse_timeframe(tf) * 1000 == step:
            return tf
    raise BotterError(f"candles are {step / 1000:g} s apart, not a usual timeframe: give timeframe=")


def read_csv_candles(path: str | Path, timeframe: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read a candles CSV as a Candles-shaped frame in file order (not yet validated) and its timeframe
    (given, or inferred from the spacing of the times)."""
    path = Path(path)
    if not path.is_file():
        raise BotterError(f"no CSV file at {path}: give path=<file.csv>")
    first = path.open().readline().strip().split(",")
    try:
        float(first[0])
        has_header = False
    except ValueError:
        has_header = True
    if has_header:
        raw = pd.read_csv(path)
        raw.columns = [str(c) for c in raw.columns]
        raw = raw[_columns(list(raw.columns), path)]
    else:
        raw = pd.read_csv(path, header=None)
        if raw.shape[1] < 6:
            raise BotterError(f"{path}: a CSV without header needs ccxt's 6 columns: timestamp_ms,open,high,low,close,volume")
        raw = raw.iloc[:, :6]
    ms = _epoch_ms(raw.iloc[:, 0])
    try:
        values = raw.iloc[:, 1:].apply(pd.to_numeric, errors="coerce").to_numpy("float64")
    except ValueError as e:
        raise BotterError(f"{path}: OHLCV columns must be numbers ({e})") from e
    return from_rows(np.column_stack([ms, values])), timeframe or infer_timeframe(ms)


def symbol_from_name(path: str | Path) -> str:
    """The market named in a file name like binance_XMR-BTC_5m.csv or ETH_USDT-1h.csv -> "XMR/BTC"."""
    m = re.search(r"(?<![A-Za-z0-9])([A-Z0-9]{2,})[-_]([A-Z0-9]{2,})(?![A-Za-z0-9])", Path(path).stem)
    if m is None:
        raise BotterError(f"cannot tell the symbol from the file name {Path(path).name}: give symbol=BASE/QUOTE")
    return f"{m.group(1)}/{m.group(2)}"
