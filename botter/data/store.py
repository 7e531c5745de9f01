"""The local candle store: one Parquet file per (exchange, symbol, timeframe), keyed by open time.

Named like freqtrade's data folder: `<data_dir>/<exchange>/<BASE_QUOTE>-<timeframe>.parquet`.
One writer at a time per file, across processes: a write takes the file's lock (a `.lock` file
beside it, released by the OS if its holder dies), reads the file as it is now, merges and replaces
it atomically, so concurrent fetches and imports all land and a reader (or a run killed mid-way)
sees the old file or the new one, never half of one.
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
from botter.data.candles import COLUMNS, between, check_symbol
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

    The path is always inside data_dir: the exchange must be a ccxt id or local-<name>, and the
    symbol and timeframe must make a plain file name."""
    name = f"{check_symbol(symbol).replace('/', '_').replace(':', '_')}-{timeframe}.parquet"
    if not FILE_NAME.fullmatch(name):
        raise BotterError(
            f"symbol {symbol!r} with timeframe {timeframe!r} does not make a store file name: use a symbol "
            "like BTC/USDT (letters, digits, / : . _ -) and a timeframe like 1h"
        )
    return Path(data_dir) / check_exchange_id(exchange) / name


def store_lock(path: Path) -> FileLock:
    """The lock of the store file at `path` (held by one writer at a time, across processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.with_name(f".{path.name}.lock"), timeout=LOCK_TIMEOUT_S)


def _empty() -> pd.DataFrame:
    index = pd.DatetimeIndex([], dtype="datetime64[ms, UTC]", name="time")
    return pd.DataFrame({c: pd.Series([], dtype="float64") for c in COLUMNS}, index=index)


def read_store(path: Path) -> pd.DataFrame:
    """The stored candles at `path`, or an empty Candles frame where there is no file yet.

    Raises BotterError naming the file and how to recover where it is not a candle store."""
    if not path.exists():
        return _empty()
    recover = (
        f"move it away (mv {path} {path}.bad) and fetch or import the candles again, or restore it from a backup"
    )
    try:
        # One open file: a writer may replace the path meanwhile, and pyarrow reading by name could
        # take the size of the old file and the bytes of the new one.
        with path.open("rb") as f:
            df = pd.read_parquet(f)
    except Exception as e:  # pyarrow raises several types for a damaged file (ArrowInvalid, OSError, ...)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BotterError(f"the store file {path} is damaged ({first}): {recover}") from e
    if not (isinstance(df.index, pd.DatetimeIndex) and str(df.index.tz) == "UTC" and list(df.columns) == COLUMNS
            and (df.dtypes == "float64").all()):
        raise BotterError(
            f"the store file {path} is not a candle store (it holds index {df.index.name!r} "
            f"{type(df.index).__name__} and columns {list(df.columns)}; a store has the UTC open times as "
            f"its index and float columns {', '.join(COLUMNS)}): {recover}"
        )
    return df


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


def append_store(path: Path, candles: pd.DataFrame, *, conflicts: str = "fail") -> Written:
    """Add `candles` (a clean Candles frame: sorted, unique open times) to the file at `path`.

    Under the file's lock it reads the file as it is now, merges and replaces it in one atomic
    write (no write where nothing changes). A new candle at a stored open time with the same values
    changes nothing; with other values `conflicts` decides: "fail" (raise, naming the first such
    candle; nothing written), "keep" (the stored one stays) or "replace" (the new one goes in).
    """
    if conflicts not in CONFLICTS:
        raise BotterError(f"conflicts={conflicts!r} is not one of: {', '.join(CONFLICTS)}")
    try:
        with store_lock(path):
            old = read_store(path)
            differ = _differ(old, candles)
            if len(differ) and conflicts == "fail":
                t = differ[0]
                stored, new = (", ".join(f"{k}={float(v)!r}" for k, v in f.loc[t, COLUMNS].items())
                               for f in (old, candles))
                raise BotterError(
                    f"{len(differ)} candles differ from the stored ones in {path}, the first at {t:%Y-%m-%d %H:%M} "
                    f"(stored {stored}; new {new}): set conflicts=replace to store the new ones or conflicts=keep "
                    "to keep the stored ones"
                )
            added = candles[~candles.index.isin(old.index)]
            replace = candles.loc[differ] if conflicts == "replace" else candles.iloc[:0]
            if len(added) == 0 and len(replace) == 0:
                return Written(old, kept=len(differ))
            merged = pd.concat([old.drop(replace.index), added, replace]).astype("float64").sort_index(kind="stable")
            merged.index = merged.index.as_unit("ms").rename("time")
            with atomic_path(path) as tmp:
                merged.to_parquet(tmp)
            return Written(merged, added=len(added), replaced=len(replace), kept=len(differ) - len(replace))
    except LockTimeout as e:
        raise BotterError(
            f"another process has held the lock of {path} for {LOCK_TIMEOUT_S} s: is a botter-fetch stuck? "
            "Stop it, then run again"
        ) from e


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
