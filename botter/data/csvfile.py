"""Read candles from a CSV file: ccxt's headerless order or a header with a date/time column.

Accepted: UTF-8 text (a byte-order mark is fine) separated by commas, semicolons or tabs (found
from the header), with any lines before the header (CryptoDataDownload puts its URL on line 1),
either rows `timestamp_ms, open, high, low, close, volume` with no header, or a header naming a
date/time column (time, timestamp, date, datetime, open_time, unix, ... in any case) and columns
open/high/low/close/volume in any case. A column named exactly so is taken before one that only
begins so ("Open" before "Open price"), a time column ("Open time") is never a price, and of
several volume columns ("Volume LTC", "Volume BTC") the one of the symbol's base currency is taken.

Times are text (UTC unless they carry an offset) or epoch numbers in seconds, milliseconds,
microseconds or nanoseconds (their size says which; every row must be in the same unit). Text is
read with one format for every row: ISO (year first) where it fits, else day-first or month-first,
whichever reads every row; where both do and differ, the one whose times are sorted and evenly
spaced, and where that does not tell either, `dayfirst` must. With `local_dates`, daily or longer
candles are stored at 00:00 UTC of the date they are written with (yfinance writes the New York
trading day 2024-01-02 as 2024-01-02 00:00:00-05:00). Rows newest first (as CryptoDataDownload
writes them) are read oldest first.

Numbers use a decimal point or a decimal comma, one for the whole file: the one every number
reads with (the other mark may group thousands: 42,000.5 or 42.000,5). A file with numbers that
need both, or with a number that reads both ways with different values ("42,000": 42000 or 42)
and no number that tells, is refused unless `decimal` (point or comma) says. Empty cells and NaN, n/a, NA, null,
None or - are missing values (validation's `nan` problem). Errors name the file's line.
"""

import csv
import io
import re
import warnings
from pathlib import Path

import ccxt
import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from botter.data.candles import COLUMNS, END_MS, FIRST_MS, from_rows, is_calendar, on_grid, slot, timeframe_ms
from botter.errors import BotterError

TIME_NAMES = ("timestamp", "time", "date", "datetime", "open_time", "opentime", "open time", "date/time", "ts", "unix")
# Words that make a column a time, never a price ("Open time", "Close time").
TIME_WORDS = {"time", "date", "timestamp", "datetime", "ts", "unix"}
TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
# Separators tried in this order: a comma may also be a decimal mark inside a ; or tab file.
SEPARATORS = ("\t", ";", ",")
# Lines looked at for the header (or the first row) before giving up.
PREAMBLE_LINES = 10
NUMBER = re.compile(r"[-+]?[0-9][0-9.,]*([eE][-+]?[0-9]+)?")
# Cells that mean "no value", as spreadsheets and exporters write it.
MISSING = ["", "NaN", "nan", "NAN", "n/a", "N/A", "NA", "na", "null", "NULL", "Null", "None", "none", "NONE", "-", "#N/A"]
# Decimal mark -> the thousands mark that may go with it.
MARKS = {".": ",", ",": "."}
DECIMAL = {"point": ".", "comma": ","}  # the `decimal` setting
MAX_NUMBER_CHARS = 400
# A UTC offset after the time of day, as in 2024-01-02 00:00:00-05:00 (group 1: the time).
OFFSET = re.compile(r"(\d\d:\d\d(:\d\d(\.\d+)?)?)\s*(Z|UTC|GMT|[+-]\d\d:?\d\d)$", re.IGNORECASE)
# Epoch units by the size of the numbers (now is ~1.7e9 s, ~1.7e12 ms, ~1.7e15 us, ~1.7e18 ns).
EPOCH_UNITS = ((1e11, 1e3, "seconds"), (1e14, 1.0, "milliseconds"), (1e17, 1e-3, "microseconds"),
               (np.inf, 1e-6, "nanoseconds"))
GRIDS = {"d": "days open at 00:00 UTC", "w": "weeks open on Monday 00:00 UTC", "M": "months open on the 1st, 00:00 UTC",
         "y": "years open on January 1st, 00:00 UTC"}
DAY_MS = 86_400_000


def _number_pattern(decimal: str) -> re.Pattern:
    d, t = re.escape(decimal), re.escape(MARKS[decimal])
    exponent = r"([eE][-+]?\d+)?"
    return re.compile(rf"[-+]?((\d+|\d{{1,3}}({t}\d{{3}})+)({d}\d*)?|{d}\d+){exponent}|[-+]?inf(inity)?", re.IGNORECASE)


NUMBERS = {mark: _number_pattern(mark) for mark in MARKS}


def _is_time(name: str) -> bool:
    return name in TIME_NAMES or bool(set(re.split(r"[\s_/()]+", name)) & TIME_WORDS)


def _candidates(names: list[str], column: str) -> list[int]:
    """Positions of the columns that may hold `column`: those named exactly so, else those that begin
    so and are no time column."""
    exact = [i for i, n in enumerate(names) if n == column]
    return exact or [i for i, n in enumerate(names) if n.startswith(column + " ") and not _is_time(n)]


def _columns(header: list[str], path: Path, symbol: str | None) -> list[int]:
    """Positions of the time column and of open, high, low, close, volume in `header`."""
    names = [h.strip().lower() for h in header]
    time_col = next((i for i, n in enumerate(names) if n in TIME_NAMES), None)
    if time_col is None:
        raise BotterError(f"{path}: no date/time column (one named like {', '.join(TIME_NAMES[:4])}) in the header")
    cols = [time_col]
    for c in COLUMNS:
        found = _candidates(names, c)
        if len(found) > 1 and c == "volume" and symbol:
            base = symbol.split("/")[0].lower()
            found = [i for i in found if names[i] == f"volume {base}"] or found
        if not found:
            raise BotterError(f"{path}: no {c!r} column in the header {header}")
        if len(found) > 1:
            named = " and ".join(repr(header[i].strip()) for i in found)
            fix = (f"none is in {symbol}'s base currency: keep the one to use, named {c!r}" if symbol and c == "volume"
                   else "give symbol=BASE/QUOTE to take the base currency's" if c == "volume"
                   else f"rename the one to use to {c!r}")
            raise BotterError(f"{path}: the columns {named} could each be the {c}: {fix}")
        cols.append(found[0])
    return cols


def _layout(lines: list[str], path: Path) -> tuple[int, str, bool]:
    """(index of the header or first row, separator, whether it is a header) from the first lines."""
    for i, line in enumerate(lines[:PREAMBLE_LINES]):
        for sep in SEPARATORS:
            try:
                fields = [f.strip() for f in next(csv.reader([line], delimiter=sep), [])]
            except csv.Error:  # a field longer than the csv module takes: no header
                break
            names = [f.lower() for f in fields]
            if all(_candidates(names, c) for c in ("open", "high", "low", "close")):
                return i, sep, True
            if len(fields) >= 6 and all(NUMBER.fullmatch(f) for f in fields[:6]):
                return i, sep, False
    raise BotterError(
        f"{path}: no header naming open, high, low and close, and no ccxt rows (timestamp_ms,open,high,low,close,"
        f"volume), in its first {PREAMBLE_LINES} lines (separated by commas, semicolons or tabs); line 1 is "
        f"{lines[0][:60]!r}"
    )


def _shown(cell) -> str:
    """A cell as a message shows it: text quoted, a number as written."""
    if isinstance(cell, str):
        return repr(cell)
    return str(int(cell)) if float(cell).is_integer() and abs(cell) < 1e16 else f"{cell:g}"


def _epoch_ms(values: np.ndarray, cells: pd.Series, lines: list[int], path: Path) -> np.ndarray:
    """Epoch numbers as ms, in the unit their size says (the same for every row)."""
    size = np.abs(values)
    units = np.minimum(np.searchsorted([bound for bound, _, _ in EPOCH_UNITS], size, side="right"), len(EPOCH_UNITS) - 1)
    unit = int(np.bincount(units).argmax())
    _, scale, name = EPOCH_UNITS[unit]
    with np.errstate(invalid="ignore", over="ignore"):
        ms = values * scale
    bad = (units != unit) | ~((ms >= FIRST_MS) & (ms < END_MS))
    if bad.any():
        i = int(np.argmax(bad))
        raise BotterError(f"{path} line {lines[i]}: the time {_shown(cells.iloc[i])} is no epoch number in {name} (like the "
                          "other rows) from 1900 to 9999: correct or remove that row")
    return np.round(ms).astype("int64")


def _regularity(ms: np.ndarray) -> tuple[bool, float]:
    """(sorted either way, share of steps that are one candle) of times read one way: the reading of
    a file's dates that makes most sense has the most."""
    steps = np.diff(ms)
    ordered = bool((steps >= 0).all() or (steps <= 0).all())
    try:
        timeframe = infer_timeframe(ms)
    except BotterError:
        return ordered, 0.0
    slots = np.diff(np.unique(slot(ms, timeframe)))
    return ordered, float((slots == 1).mean())


def _order(fmt: str) -> str:
    """'day-first', 'month-first' or '' for a strptime format."""
    d, m = fmt.find("%d"), fmt.find("%m")
    return "" if d < 0 or m < 0 else "day-first" if d < m else "month-first"


def _text_ms(text: pd.Series, lines: list[int], path: Path, dayfirst: bool | None) -> np.ndarray:
    """Times written as text, read with one format for every row (see the module docstring)."""
    try:
        return pd.to_datetime(text, utc=True, format="ISO8601").dt.as_unit("ms").astype("int64").to_numpy()
    except (ValueError, OverflowError):
        pass
    formats = []
    for first in (False, True) if dayfirst is None else (dayfirst,):
        fmt = guess_datetime_format(text.iloc[0], dayfirst=first)
        year_first = fmt is not None and fmt.find("%Y") < min(fmt.find("%d"), fmt.find("%m"))
        if fmt and fmt not in formats and not (year_first and _order(fmt) == "day-first") and (
                dayfirst is None or _order(fmt) in ("", "day-first" if dayfirst else "month-first")):
            formats.append(fmt)
    readings = {}
    for fmt in formats:
        try:
            readings[fmt] = pd.to_datetime(text, utc=True, format=fmt).dt.as_unit("ms").astype("int64").to_numpy()
        except (ValueError, OverflowError):
            pass
    if not readings:
        fmt = formats[0] if formats else None
        missed = pd.to_datetime(text, utc=True, format=fmt, errors="coerce").isna().to_numpy() if fmt else [True]
        i = int(np.argmax(missed))
        how = f" as {_order(fmt)} {fmt}".replace("  ", " ") if fmt else ""
        raise BotterError(f"{path} line {lines[i]}: cannot read the time {text.iloc[i]!r}{how}: write every time in one "
                          "format, like 2024-01-01 12:00 (ISO), or as epoch ms")
    if len(readings) > 1 and not np.array_equal(*readings.values()):
        score = {fmt: _regularity(ms) for fmt, ms in readings.items()}
        best = max(score.values())
        if list(score.values()).count(best) > 1:
            (f1, a), (f2, b) = readings.items()
            i = int(np.argmax(a != b))
            ts = [f"{pd.Timestamp(x, unit='ms'):%Y-%m-%d}" for x in (a[i], b[i])]
            raise BotterError(
                f"{path}: the dates read both {_order(f1)} and {_order(f2)} ({text.iloc[i]!r} on line {lines[i]} is "
                f"{ts[0]} or {ts[1]}), sorted and evenly spaced either way: give dayfirst=true (day-first) or "
                "dayfirst=false (month-first)"
            )
        readings = {fmt: ms for fmt, ms in readings.items() if score[fmt] == best}
    return next(iter(readings.values()))


def _times(cells: pd.Series, lines: list[int], path: Path, dayfirst: bool | None, local_dates: bool) -> np.ndarray:
    """The time column as epoch ms (with local_dates: the times as written, their offsets dropped)."""
    if pd.api.types.is_numeric_dtype(cells):
        numbers = cells.to_numpy("float64")
    else:
        cells = cells.astype(str).str.strip()
        numeric = pd.to_numeric(cells, errors="coerce")
        numbers = numeric.to_numpy("float64") if numeric.notna().all() else None
    if numbers is not None:
        if local_dates:
            raise BotterError(f"{path}: local_dates=true takes each date as written, but the times are epoch numbers, "
                              "which name an instant, not a local date: leave local_dates out")
        return _epoch_ms(numbers, cells, lines, path)
    ms = _text_ms(cells.str.replace(OFFSET, r"\1", regex=True) if local_dates else cells, lines, path, dayfirst)
    bad = (ms < FIRST_MS) | (ms >= END_MS)
    if bad.any():
        i = int(np.argmax(bad))
        raise BotterError(f"{path} line {lines[i]}: the time {cells.iloc[i]!r} is not from 1900 to 9999: correct or "
                          "remove that row")
    return ms


def _numbers(table: pd.DataFrame, lines: list[int], path: Path, decimal: str | None) -> np.ndarray:
    """`table` (open, high, low, close, volume) as float64, missing cells NaN: the columns pandas left
    as text are read with the file's decimal mark (see the module docstring); text that is no
    number raises."""
    table = table.reset_index(drop=True)
    text = table.select_dtypes(exclude="number")
    if not text.shape[1]:
        return table.to_numpy("float64")
    cells = text.stack().dropna().astype(str).str.strip()
    short = (cells.str.len() <= MAX_NUMBER_CHARS).to_numpy()  # no number is longer; Python refuses some that are
    fits = {mark: short & cells.str.fullmatch(pattern).astype(bool).to_numpy() for mark, pattern in NUMBERS.items()}

    def where(i: int) -> str:
        row, col = cells.index[i]
        return f"{cells.iloc[i]!r} (line {lines[row]}, {COLUMNS[table.columns.get_loc(col)]})"

    def read(mark: str) -> np.ndarray:
        plain = cells.str.replace(MARKS[mark], "", regex=False).str.replace(mark, ".", regex=False)
        return pd.to_numeric(plain).to_numpy("float64")

    usable = [m for m in MARKS if (decimal or m) == m]
    bad = ~np.logical_or.reduce([fits[m] for m in usable])
    if bad.any():
        row, col = cells.index[int(np.argmax(bad))]
        how = f" written with a decimal {'point' if decimal == '.' else 'comma'}" if decimal else ""
        raise BotterError(f"{path} line {lines[row]}: {cells.iloc[int(np.argmax(bad))][:40]!r} in the "
                          f"{COLUMNS[table.columns.get_loc(col)]} column is not a number{how}")
    if decimal is None:
        fitting = [m for m in MARKS if fits[m].all()]
        if not fitting:
            comma, point = (int(np.argmax(fits[m] & ~fits[MARKS[m]])) for m in (",", "."))
            raise BotterError(f"{path}: the numbers mix decimal marks: {where(comma)} reads only with a decimal comma, "
                              f"{where(point)} only with a decimal point: write them all one way")
        if len(fitting) == 2:
            point, comma = read("."), read(",")
            differ = ~((point == comma) | (np.isnan(point) & np.isnan(comma)))
            if differ.any():
                i = int(np.argmax(differ))
                raise BotterError(f"{path}: {where(i)} reads as {point[i]:g} (a decimal point, ',' grouping thousands) "
                                  f"or as {comma[i]:g} (a decimal comma), and no number in the file tells which: "
                                  "give decimal=point or decimal=comma")
        decimal = fitting[0]
    values = pd.Series(read(decimal), index=cells.index).unstack()
    table = table.copy()
    table[text.columns] = values.reindex(index=table.index, columns=text.columns).to_numpy("float64")
    return table.to_numpy("float64")


def _duration(ms: int) -> str:
    for unit, size in (("days", DAY_MS), ("hours", 3_600_000), ("minutes", 60_000)):
        if ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms / 1000:g} seconds"


def infer_timeframe(ms: np.ndarray) -> str:
    """The timeframe of candles at open times `ms` (epoch ms): their most common spacing (1M where
    it is a calendar month, the times on the 1st)."""
    steps = np.diff(np.unique(ms))
    if len(steps) == 0:
        raise BotterError("cannot infer the timeframe from fewer than two candles: give timeframe=")
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[np.argmax(counts)])
    for tf in TIMEFRAMES:
        if timeframe_ms(tf) == step:
            return tf
    if 28 * DAY_MS <= step <= 31 * DAY_MS and on_grid(ms, "1M").mean() > 0.5:
        return "1M"
    raise BotterError(f"candles are {_duration(step)} apart, not a usual timeframe: give timeframe=")


def _check_spacing(ms: np.ndarray, timeframe: str, path: Path) -> None:
    """Refuse a given timeframe that the spacing of the candles contradicts (5m candles as 1h)."""
    steps = np.diff(slot(np.unique(ms), timeframe))
    if len(steps) == 0:
        return
    values, counts = np.unique(steps, return_counts=True)
    if values[np.argmax(counts)] != 1:  # several candles to a slot (0), or slots skipped (2 or more)
        try:
            found = f"{infer_timeframe(ms)} apart"
        except BotterError:
            found = f"{_duration(int(np.median(np.diff(np.unique(ms)))))} apart"
        raise BotterError(f"{path}: timeframe={timeframe}, but the candles are {found} (the most common spacing of "
                          "their times): give the timeframe they are, or leave timeframe out to take it from them")


def _check_grid(ms: np.ndarray, timeframe: str, offsets: bool, path: Path) -> None:
    """Refuse a file in which no candle opens on the timeframe's grid, saying why."""
    if len(ms) == 0 or on_grid(ms, timeframe).any():
        return
    grid = GRIDS.get(timeframe[-1], f"{timeframe} candles open at whole multiples of {timeframe} from 00:00 UTC")
    first = f"the first opens at {pd.Timestamp(int(ms[0]), unit='ms'):%Y-%m-%d %H:%M} UTC"
    if is_calendar(timeframe) and offsets:
        fix = ("they are stamped at a local midnight (the times carry a UTC offset): give local_dates=true to store each "
               "at 00:00 UTC of the date it is written with")
    elif is_calendar(timeframe):
        fix = "give local_dates=true to store each at 00:00 UTC of the date it is written with, or correct the times"
    else:
        fix = "botter cannot store candles off that grid: use candles that open on it, or another timeframe"
    raise BotterError(f"{path}: no candle opens on the {timeframe} grid ({grid}); {first}: {fix}")


def read_csv_candles(path: str | Path, timeframe: str | None = None, *, symbol: str | None = None,
                     dayfirst: bool | None = None, decimal: str | None = None,
                     local_dates: bool = False) -> tuple[pd.DataFrame, str]:
    """Read a candles CSV (see the module docstring) as a Candles-shaped frame in file order, or
    reversed where the file is newest first (not yet validated), and its timeframe.

    timeframe: given (checked against the spacing of the times) or None (inferred from it).
    symbol: BASE/QUOTE, to choose among volume columns. dayfirst: None (found from the dates), True
    or False. decimal: None (found from the numbers), "point" or "comma". local_dates: store daily or
    longer candles at 00:00 UTC of the date they are written with. A file it cannot read raises
    BotterError saying what is wrong with it and where."""
    path = Path(path)
    if decimal is not None and decimal not in DECIMAL:
        raise BotterError(f"decimal={decimal!r}: give decimal=point or decimal=comma (or leave it out)")
    if dayfirst not in (None, True, False):
        raise BotterError(f"dayfirst={dayfirst!r}: give dayfirst=true or dayfirst=false (or leave it out)")
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
    if not text.strip():
        raise BotterError(f"{path} is empty: export the candles again")
    lines = re.split(r"\r\n|\r|\n", text)
    start, sep, has_header = _layout(lines, path)
    # The lines pandas reads (blank ones left out) and their numbers in the file, for messages.
    kept = [(n, line) for n, line in enumerate(lines[start:], start + 1) if line.strip()]
    numbers = [n for n, _ in kept]
    rows_at = numbers[has_header:]  # the file line of each row
    data = "\n".join(line for _, line in kept)
    # Where a comma may sit inside a number (decimal commas, thousands), every cell is read as text
    # and converted here; elsewhere pandas reads the numbers (many times faster).
    commas_in_cells = '"' in data if sep == "," else "," in data
    try:
        with warnings.catch_warnings():
            # pandas only warns where the first row has more fields than the header, and drops them.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(io.StringIO(data), sep=sep, header=0 if has_header else None,
                                dtype=str if commas_in_cells else None, skipinitialspace=True, index_col=False,
                                keep_default_na=False, na_values=MISSING)
    except pd.errors.ParserWarning as e:
        raise BotterError(f"{path} line {rows_at[0]}: more fields than the header names: check the file's rows") from e
    except pd.errors.ParserError as e:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        what = (f" line {numbers[int(m[2]) - 1]}: {m[3]} fields where the first row has {m[1]}" if m
                else f": {str(e).strip().splitlines()[0]}")
        raise BotterError(f"{path}{what}: check the file's rows") from e
    # A row without header has ccxt's columns: the first line had six numbers at least.
    table = table.iloc[:, _columns([str(c) for c in table.columns], path, symbol) if has_header else slice(0, 6)]
    if len(table) == 0:
        raise BotterError(f"{path} has a header but no candle rows: export the candles again")
    missing = table.iloc[:, 0].isna().to_numpy()
    if missing.any():
        raise BotterError(f"{path} line {rows_at[int(np.argmax(missing))]} has no time")
    ms = _times(table.iloc[:, 0], rows_at, path, dayfirst, local_dates)
    if timeframe is None:
        timeframe = infer_timeframe(ms)
    else:
        _check_spacing(ms, timeframe, path)
    if local_dates:
        if not is_calendar(timeframe):
            raise BotterError(f"{path}: local_dates=true is for daily or longer candles, and these are {timeframe}: "
                              "leave local_dates out")
        ms = ms // DAY_MS * DAY_MS  # the date as written, at 00:00 UTC
    offsets = not pd.api.types.is_numeric_dtype(table.iloc[:, 0]) and bool(
        (table.iloc[:, 0].astype(str).str.strip().str.count(OFFSET) > 0).any())
    _check_grid(ms, timeframe, offsets, path)
    rows = np.column_stack([ms, _numbers(table.iloc[:, 1:], rows_at, path, DECIMAL.get(decimal))])
    if len(ms) > 1 and (np.diff(ms) < 0).all():
        rows = rows[::-1]  # newest first is a way to write a file, not disorder
    return from_rows(rows), timeframe


def symbol_from_name(path: str | Path) -> str:
    """The market named in a file name like binance_XMR-BTC_5m.csv or ETH_USDT-1h.csv -> "XMR/BTC".

    Only a BASE-QUOTE (or BASE_QUOTE) pair of capitals and digits counts, neither part a date, a
    timeframe (15M) or an exchange (BINANCE); none or several raise BotterError asking for symbol=."""
    stem = Path(path).stem
    pairs = []
    for m in re.finditer(r"(?<![A-Za-z0-9])(?=([A-Z0-9]{2,})[-_]([A-Z0-9]{2,})(?![A-Za-z0-9]))", stem):
        parts = m.group(1), m.group(2)
        if all(re.search("[A-Z]", p) and not re.fullmatch(r"\d+(S|M|MIN|H|D|W|MO|Y)", p)
               and p.lower() not in ccxt.exchanges for p in parts) and "/".join(parts) not in pairs:
            pairs.append("/".join(parts))
    if len(pairs) != 1:
        found = f" names {' and '.join(pairs)}" if pairs else " has no BASE-QUOTE pair like BTC-USDT (not a date or timeframe)"
        raise BotterError(f"cannot tell the symbol from the file name {Path(path).name}: it{found}: give "
                          "symbol=BASE/QUOTE")
    return pairs[0]
