"""The local candle store: one Parquet file per (exchange, symbol, timeframe), keyed by open time.

Named like freqtrade's data folder: `<data_dir>/<exchange>/<BASE_QUOTE>-<timeframe>.parquet`.
One writer at a time per file, across processes: a write takes the file's lock (a `.lock` file
beside it, released by the OS if its holder dies), reads the file as it is now, merges and replaces
it atomically, so concurrent fetches and imports all land and a reader (or a run killed mid-way)
sees the old file or the new one, never half of one. Where nothing would change, nothing is
locked or written (a read-only store can still be read and checked).

Every read checks the file: its pages' checksums (written with each page), and its shape (UTC open
times unique, sorted, on the grid of the timeframe its name says, float64 columns open, high, low,
close, volume). A file that fails is named with the way out and never written over.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import ccxt
import pandas as pd
from filelock import FileLock
from filelock import Timeout as LockTimeout

from botter.atomic import atomic_path
from botter.data.candles import COLUMNS, between, check_symbol, on_grid, timeframe_ms
from botter.errors import BotterError

# A name for candles that come from no ccxt exchange (a CSV from elsewhere): local-<name>.
LOCAL = re.compile(r"local-[A-Za-z0-9][A-Za-z0-9_.-]*")
# File names stay plain: no folder separators, nothing hidden.
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# How long a writer waits for another one (a write takes seconds at most).
LOCK_TIMEOUT_S = 300
CONFLICTS = ("fail", "keep", "replace")


def check_exchange_id(exchange: str) -> str:
    """`exchange` where it is a ccxt exchange id or a local name (local-<name>), else BotterError."""
    if exchange in ccxt.exchanges or LOCAL.fullmatch(str(exchange)):
        return exchange
    raise BotterError(
        f"exchange.id={exchange!r} is not a ccxt exchange id (ids are like binance, kraken, okx); "
        "for candles from no exchange (a CSV), name it local-<name>, like exchange.id=local-kaggle"
    )


def store_path(data_dir: str | os.PathLike, exchange: str, symbol: str, timeframe: str) -> Path:
    """Where the candles of one market live: "BTC/USDT:USDT" -> <data_dir>/<exchange>/BTC_USDT_USDT-1h.parquet.

    The path is always inside data_dir: the exchange must be a ccxt id or local-<name>, the symbol
    BASE/QUOTE (with an optional :SETTLE), and symbol and timeframe must make a plain file name."""
    check_symbol(symbol)
    timeframe_ms(timeframe)  # a timeframe like 1h, or one line saying how to write it
    name = f"{symbol.replace('/', '_').replace(':', '_')}-{timeframe}.parquet"
    if not FILE_NAME.fullmatch(name):
        raise BotterError(
            f"symbol {symbol!r} with timeframe {timeframe!r} does not make a store file name: use a symbol "
            "like BTC/USDT (letters, digits, / : . _ -) and a timeframe like 1h"
        )
    return Path(data_dir) / check_exchange_id(exchange) / name


def _unwritable(path: Path, e: OSError) -> BotterError:
    """One line for a store folder or file the system will not let botter write."""
    why = e.strerror or type(e).__name__
    return BotterError(f"cannot write the store {path} ({why}: {e.filename or path}): check that paths.data_dir is a "
                       "folder you may write to, with free space, then run again")


def store_lock(path: Path) -> FileLock:
    """The lock of the store file at `path` (held by one writer at a time, across processes). Makes
    the store's folder; one that cannot be made raises BotterError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(path, e) from e
    return FileLock(path.with_name(f".{path.name}.lock"), timeout=LOCK_TIMEOUT_S)


def _empty() -> pd.DataFrame:
    index = pd.DatetimeIndex([], dtype="datetime64[ms, UTC]", name="time")
    return pd.DataFrame({c: pd.Series([], dtype="float64") for c in COLUMNS}, index=index)


def _timeframe(path: Path) -> str:
    """The timeframe a store file's name says (store_path: <BASE_QUOTE>-<timeframe>.parquet)."""
    timeframe = path.name.removesuffix(".parquet").rpartition("-")[2]
    try:
        timeframe_ms(timeframe)
    except BotterError as e:
        raise BotterError(f"{path} is not named like a store file (<BASE_QUOTE>-<timeframe>.parquet): use "
                          "botter.data.store_path") from e
    return timeframe


def _shape_problem(df: pd.DataFrame, timeframe: str) -> str | None:
    """What makes `df` no Candles frame of `timeframe`, or None."""
    index = df.index
    if not (isinstance(index, pd.DatetimeIndex) and str(index.tz) == "UTC" and list(df.columns) == COLUMNS
            and (df.dtypes == "float64").all()):
        return (f"it holds index {index.name!r} {type(index).__name__} and columns "
                f"{', '.join(f'{c} {t}' for c, t in df.dtypes.astype(str).items())}; a store has the UTC open times as "
                f"its index and float64 columns {', '.join(COLUMNS)}")
    if index.hasnans:
        return f"{int(index.isna().sum())} open times are missing (NaT)"
    if not index.is_unique:
        return f"open times repeat, like {index[index.duplicated()][0]:%Y-%m-%d %H:%M}"
    if not index.is_monotonic_increasing:
        return "its open times are out of order"
    off = ~on_grid(index.as_unit("ms").asi8, timeframe)
    if off.any():
        return f"{int(off.sum())} open times are off the {timeframe} grid, like {index[off][0]}"
    return None


def _version(st: os.stat_result | None) -> tuple | None:
    """What tells one version of a store file from another (a write replaces the file: a new inode)."""
    return None if st is None else (st.st_ino, st.st_mtime_ns, st.st_size)


def _read(path: Path) -> tuple[pd.DataFrame, tuple | None]:
    """(the stored candles, the version of the file read) for `read_store`."""
    timeframe = _timeframe(path)
    recover = (
        f"move it away (mv {path} {path}.bad) and fetch or import the candles again, or restore it from a backup"
    )
    try:
        # One open file: a writer may replace the path meanwhile, and pyarrow reading by name could
        # take the size of the old file and the bytes of the new one.
        f = path.open("rb")
    except FileNotFoundError:
        return _empty(), None
    except OSError as e:  # a folder in its place, no permission, paths.data_dir a file
        raise BotterError(f"cannot read the store {path} ({e.strerror}: {e.filename}): check that paths.data_dir "
                          "is a folder you may read") from e
    with f:
        version = _version(os.fstat(f.fileno()))
        try:
            df = pd.read_parquet(f, page_checksum_verification=True)
        except Exception as e:  # pyarrow raises several types for a damaged file (ArrowInvalid, OSError, ...)
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise BotterError(f"the store file {path} is damaged ({first}): {recover}") from e
    problem = _shape_problem(df, timeframe)
    if problem:
        raise BotterError(f"the store file {path} is not a candle store ({problem}): {recover}")
    return df, version


def read_store(path: Path) -> pd.DataFrame:
    """The stored candles at `path` (a file named by `store_path`), or an empty Candles frame where
    there is no file yet.

    Raises BotterError naming the file and how to recover where it is damaged (a page whose checksum
    fails, a file cut short) or not a candle store (see the module docstring)."""
    return _read(path)[0]


@dataclass
class Written:
    """What `append_store` did: the whole stored frame after it, the candles added at new open
    times, stored candles replaced by different new ones, and different ones left as stored."""

    stored: pd.DataFrame
    added: int = 0
    replaced: int = 0
    kept: int = 0


def _differ(old: pd.DataFrame, new: pd.DataFrame) -> pd.DatetimeIndex:
    """Open times in both frames whose values differ (NaN equals NaN)."""
    common = new.index.intersection(old.index)
    a, b = old.loc[common, COLUMNS].to_numpy("float64"), new.loc[common, COLUMNS].to_numpy("float64")
    same = ((a == b) | (pd.isna(a) & pd.isna(b))).all(axis=1)
    return common[~same]


def _merge(old: pd.DataFrame, candles: pd.DataFrame, path: Path, conflicts: str) -> tuple[pd.DataFrame | None, Written]:
    """(the merged frame to write, or None where nothing changes; what it does) for `append_store`."""
    differ = _differ(old, candles)
    if len(differ) and conflicts == "fail":
        t = differ[0]
        stored, new = (", ".join(f"{k}={float(v)!r}" for k, v in f.loc[t, COLUMNS].items()) for f in (old, candles))
        raise BotterError(
            f"{len(differ)} candles differ from the stored ones in {path}, the first at {t:%Y-%m-%d %H:%M} "
            f"(stored {stored}; new {new}): set conflicts=replace to store the new ones or conflicts=keep "
            "to keep the stored ones"
        )
    added = candles[~candles.index.isin(old.index)]
    replace = candles.loc[differ] if conflicts == "replace" else candles.iloc[:0]
    if len(added) == 0 and len(replace) == 0:
        return None, Written(old, kept=len(differ))
    merged = pd.concat([old.drop(replace.index), added, replace]).astype("float64").sort_index(kind="stable")
    merged.index = merged.index.as_unit("ms").rename("time")
    return merged, Written(merged, added=len(added), replaced=len(replace), kept=len(differ) - len(replace))


def append_store(path: Path, candles: pd.DataFrame, *, conflicts: str = "fail") -> Written:
    """Add `candles` (a clean Candles frame: sorted, unique open times on the grid) to the file at `path`.

    Under the file's lock it reads the file as it is now, merges and replaces it in one atomic
    write, with page checksums; where nothing changes it neither locks nor writes. A new candle at a
    stored open time with the same values changes nothing; with other values `conflicts` decides:
    "fail" (raise, naming the first such candle; nothing written), "keep" (the stored one stays) or
    "replace" (the new one goes in). Temporary files that a killed writer left are removed. A
    folder or disk that cannot be written raises BotterError.
    """
    if conflicts not in CONFLICTS:
        raise BotterError(f"conflicts={conflicts!r} is not one of: {', '.join(CONFLICTS)}")
    problem = _shape_problem(candles, _timeframe(path))
    if problem:
        raise BotterError(f"cannot store these candles in {path}: {problem}")
    old, version = _read(path)
    merged, written = _merge(old, candles, path, conflicts)
    if merged is None:
        return written
    try:
        with store_lock(path):
            try:
                now = _version(path.stat())
            except FileNotFoundError:
                now = None
            if now != version:  # another writer came first: merge with the file as it is now
                merged, written = _merge(read_store(path), candles, path, conflicts)
                if merged is None:
                    return written
            for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-write
                stale.unlink(missing_ok=True)
            with atomic_path(path) as tmp:
                merged.to_parquet(tmp, write_page_checksum=True)
            return written
    except LockTimeout as e:
        raise BotterError(
            f"another process has held the lock of {path} for {LOCK_TIMEOUT_S} s: is a botter-fetch stuck? "
            "Stop it, then run again"
        ) from e
    except OSError as e:
        raise _unwritable(path, e) from e


def load_candles(exchange: str, symbol: str, timeframe: str, *, start=None, end=None, data_dir) -> pd.DataFrame:
    """Load stored candles with open time in [start, end) as a Candles frame.

    start/end: text like "2024-01-01", a datetime, or epoch ms; None for no bound.
    Raises BotterError when nothing is stored for the market (and says how to fetch it).
    """
    path = store_path(data_dir, exchange, symbol, timeframe)
    if not path.exists():
        how = (f"source=csv path=<file.csv> exchange.id={exchange} symbol={symbol}" if LOCAL.fullmatch(exchange)
               else f"exchange.id={exchange} symbol={symbol} timeframe={timeframe} since=YYYY-MM-DD")
        raise BotterError(f"no candles stored for {exchange} {symbol} {timeframe} in {path.parent}: run "
                          f"`botter-fetch {how}` first")
    return between(read_store(path), start, end)
