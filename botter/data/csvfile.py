"""Read candles from a CSV file: ccxt's headerless order or a header with a date/time column.

Accepted: UTF-8 text (a byte-order mark is fine) separated by commas, semicolons or tabs (found
from the header), with any lines before the header (CryptoDataDownload puts its URL on line 1),
either rows `timestamp_ms, open, high, low, close, volume` with no header, or a header naming a
date/time column (time, timestamp, date, datetime, open_time, unix, ... in any case) and columns
open/high/low/close/volume in any case ("Volume BTC" counts as volume). Times may be text (UTC
unless they carry an offset) or epoch numbers in seconds, milliseconds or microseconds; rows
newest first (as CryptoDataDownload writes them) are read oldest first. Numbers
may use decimal commas (1,5) where no number in the file has a dot; where both marks appear, the
last one in a number is the decimal mark and the other groups thousands.
"""

import csv
import io
import re
import warnings
from pathlib import Path

import ccxt
import numpy as np
import pandas as pd

from botter.data.candles import COLUMNS, from_rows
from botter.errors import BotterError

TIME_NAMES = ("timestamp", "time", "date", "datetime", "open_time", "opentime", "open time", "date/time", "ts", "unix")
TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
# Separators tried in this order: a comma may also be a decimal mark inside a ; or tab file.
SEPARATORS = ("\t", ";", ",")
# Lines looked at for the header (or the first row) before giving up.
PREAMBLE_LINES = 10
NUMBER = re.compile(r"[-+]?[0-9][0-9.,]*([eE][-+]?[0-9]+)?")


def _epoch_ms(values: pd.Series, path: Path) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(values):
        v = values.to_numpy("float64")
        big = np.nanmax(np.abs(v)) if len(v) else 0
        # Now is ~1.7e9 s, ~1.7e12 ms, ~1.7e15 us: the size says the unit.
        scale = 1e-3 if big > 1e14 else 1.0 if big > 1e11 else 1e3
        return np.round(v * scale).astype("int64")
    try:
        times = pd.to_datetime(values, utc=True, format="mixed")
    except (ValueError, TypeError) as e:
        raise BotterError(f"{path}: cannot read the times ({e}): use ISO text like 2024-01-01 12:00 or epoch ms") from e
    return times.dt.as_unit("ms").astype("int64").to_numpy()


def _named(names: list[str], column: str) -> int | None:
    return next((i for i, n in enumerate(names) if n == column or n.startswith(column + " ")), None)


def _columns(header: list[str], path: Path) -> list[int]:
    """Positions of the time column and of open, high, low, close, volume in `header`."""
    names = [h.strip().lower() for h in header]
    time_col = next((i for i, n in enumerate(names) if n in TIME_NAMES), None)
    if time_col is None:
        raise BotterError(f"{path}: no date/time column (one named like {', '.join(TIME_NAMES[:4])}) in the header")
    cols = [time_col]
    for c in COLUMNS:
        found = _named(names, c)
        if found is None:
            raise BotterError(f"{path}: no {c!r} column in the header {header}")
        cols.append(found)
    return cols


def _layout(lines: list[str], path: Path) -> tuple[int, str, bool]:
    """(index of the header or first row, separator, whether it is a header) from the first lines."""
    for i, line in enumerate(lines[:PREAMBLE_LINES]):
        for sep in SEPARATORS:
            fields = [f.strip() for f in next(csv.reader([line], delimiter=sep), [])]
            names = [f.lower() for f in fields]
            if all(_named(names, c) is not None for c in ("open", "high", "low", "close")):
                return i, sep, True
            if len(fields) >= 6 and all(NUMBER.fullmatch(f) for f in fields[:6]):
                return i, sep, False
    raise BotterError(
        f"{path}: no header naming open, high, low and close, and no ccxt rows (timestamp_ms,open,high,low,close,"
        f"volume), in its first {PREAMBLE_LINES} lines (separated by commas, semicolons or tabs); line 1 is "
        f"{lines[0][:60]!r}"
    )


def _decimal_marks(cells: pd.Series) -> tuple[str, str]:
    """(decimal mark, thousands mark or "") the numbers in `cells` (text) are written with."""
    comma, dot = cells.str.contains(",", regex=False), cells.str.contains(".", regex=False)
    if not comma.any():
        return ".", ""
    both = cells[comma & dot]
    if len(both):
        x = both.iloc[0]
        return (",", ".") if x.rfind(",") > x.rfind(".") else (".", ",")
    if dot.any() or (cells.str.count(",") > 1).any():
        return ".", ","
    return ",", ""


def _numbers(table: pd.DataFrame, path: Path, first_line: int) -> np.ndarray:
    """`table` (open, high, low, close, volume) as float64, missing cells NaN: the columns pandas
    left as text are read with the file's decimal marks; text that is no number raises."""
    text = table.select_dtypes(exclude="number")
    if text.shape[1]:
        decimal, thousands = _decimal_marks(text.stack().dropna())
        plain = text.apply(lambda col: col.str.replace(thousands, "", regex=False) if thousands else col)
        plain = plain.apply(lambda col: col.str.replace(decimal, ".", regex=False).str.strip())
        values = plain.apply(pd.to_numeric, errors="coerce")
        bad = values.isna() & text.notna()
        if bad.any(axis=None):
            row, col = np.argwhere(bad.to_numpy())[0]
            raise BotterError(
                f"{path} line {first_line + row}: {text.iat[row, col]!r} in the "
                f"{COLUMNS[table.columns.get_loc(text.columns[col])]} column is not a number"
            )
        table = table.copy()
        table[text.columns] = values
    return table.to_numpy("float64")


def read_csv_candles(path: str | Path, timeframe: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read a candles CSV as a Candles-shaped frame in file order, or reversed where the file is newest
    first (not yet validated), and its timeframe
    (given, or inferred from the spacing of the times). A file it cannot read raises BotterError
    saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise BotterError(f"no CSV file at {path}: give path=<file.csv>")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise BotterError(
            f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line}): save it as UTF-8 (CSV UTF-8)"
        ) from e
    lines = text.splitlines()
    if not text.strip():
        raise BotterError(f"{path} is empty: export the candles again")
    start, sep, has_header = _layout(lines, path)
    first_line = start + 1 + has_header  # file line of the first row (1-based)
    data = "\n".join(lines[start:])
    # Where a comma may sit inside a number (decimal commas, thousands), every cell is read as text
    # and converted here; elsewhere pandas reads the numbers (many times faster).
    commas_in_cells = '"' in data if sep == "," else "," in data
    try:
        with warnings.catch_warnings():
            # pandas only warns where the first row has more fields than the header, and drops them.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(io.StringIO(data), sep=sep, header=0 if has_header else None,
                                dtype=str if commas_in_cells else None, skipinitialspace=True, index_col=False)
    except pd.errors.ParserWarning as e:
        raise BotterError(f"{path} line {first_line}: more fields than the header names: check the file's rows") from e
    except pd.errors.ParserError as e:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        what = (f" line {int(m[2]) + start}: {m[3]} fields where the first row has {m[1]}" if m
                else f": {str(e).strip().splitlines()[0]}")
        raise BotterError(f"{path}{what}: check the file's rows") from e
    # A row without header has ccxt's columns: the first line had six numbers at least.
    table = table.iloc[:, _columns([str(c) for c in table.columns], path) if has_header else slice(0, 6)]
    if len(table) == 0:
        raise BotterError(f"{path} has a header but no candle rows: export the candles again")
    missing = table.iloc[:, 0].isna()
    if missing.any():
        raise BotterError(f"{path} line {first_line + int(np.argmax(missing))} has no time")
    times = table.iloc[:, 0]
    if not pd.api.types.is_numeric_dtype(times):
        times = times.str.strip()
        numeric = pd.to_numeric(times, errors="coerce")
        times = numeric if numeric.notna().all() else times
    ms = _epoch_ms(times, path)
    rows = np.column_stack([ms, _numbers(table.iloc[:, 1:], path, first_line)])
    if len(ms) > 1 and (np.diff(ms) < 0).all():
        rows = rows[::-1]  # newest first is a way to write a file, not disorder
    return from_rows(rows), timeframe or infer_timeframe(ms)


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


def symbol_from_name(path: str | Path) -> str:
    """The market named in a file name like binance_XMR-BTC_5m.csv or ETH_USDT-1h.csv -> "XMR/BTC"."""
    m = re.search(r"(?<![A-Za-z0-9])([A-Z0-9]{2,})[-_]([A-Z0-9]{2,})(?![A-Za-z0-9])", Path(path).stem)
    if m is None:
        raise BotterError(f"cannot tell the symbol from the file name {Path(path).name}: give symbol=BASE/QUOTE")
    return f"{m.group(1)}/{m.group(2)}"
