"""The paper ledger: one SQLite file (WAL) per paper run, one transaction per candle time, one writer.

Each candle time's fills, marks to market, decisions and orders (one of each per symbol traded) and
the candles skipped as untradeable go in together, keyed by (symbol, candle open time). A run killed
at any point, SIGKILL included, leaves either the whole candle time or none of it, so a restart
resumes after the last recorded one with nothing lost and nothing duplicated.

The file carries its schema version (`PRAGMA user_version`; the ledgers written before there was
one are version 1) and is migrated forward when a writer opens it. One writer at a time: a writer
holds an OS lock on `<ledger>.lock` (dropped by the OS when the process ends, however it ends), and
the file names the holder, so a second writer is refused with a line that says who has it.
`meta` holds the settings that make the run what it is; a ledger resumes only under the same ones.
"""

import fcntl
import json
import logging
import os
import socket
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from botter.errors import BotterError
from botter.signals import Held

log = logging.getLogger(__name__)

VERSION = 2  # of the tables below; 1: one symbol, tables keyed by time alone (botter before v2)
TABLES = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",  # the settings, JSON values
    # One row per symbol and closed candle: the symbol's share of the account marked at its close.
    """CREATE TABLE bars (
        time INTEGER NOT NULL,          -- candle open time, UTC epoch ms
        symbol TEXT NOT NULL,
        open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
        position REAL NOT NULL,         -- base units held at the close (negative = short)
        side INTEGER NOT NULL,          -- -1, 0, 1: the target that position was filled for
        cash REAL NOT NULL,             -- quote units
        equity REAL NOT NULL,           -- cash + position * close, quote units
        PRIMARY KEY (symbol, time))""",
    # The model's view at the close of the candle and the target position it leads to.
    """CREATE TABLE decisions (
        time INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        p_down REAL, p_up REAL, p_flat REAL,  -- NULL: no chart (a gap in its lookback), the model was not asked
        target INTEGER NOT NULL,        -- -1, 0, 1: wanted from the next candle's open on
        signal INTEGER NOT NULL,        -- the signal rule's state after this candle (botter.signals.Held):
        held INTEGER NOT NULL,          --   its position (the target unless no chart or ruin) and candles held
        PRIMARY KEY (symbol, time), FOREIGN KEY (symbol, time) REFERENCES bars (symbol, time))""",
    # An order is placed at the close of `time` when the target differs from the side held.
    """CREATE TABLE orders (
        time INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,             -- buy or sell
        target INTEGER NOT NULL,
        PRIMARY KEY (symbol, time), FOREIGN KEY (symbol, time) REFERENCES bars (symbol, time))""",
    # Filled at the open of candle `time` (the symbol's candle after the order's).
    """CREATE TABLE fills (
        time INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        order_time INTEGER NOT NULL,
        side TEXT NOT NULL,
        quantity REAL NOT NULL,         -- base units, > 0
        price REAL NOT NULL,            -- quote per base unit, slippage included
        fee REAL NOT NULL,              -- quote units
        PRIMARY KEY (symbol, time), UNIQUE (symbol, order_time),
        FOREIGN KEY (symbol, order_time) REFERENCES orders (symbol, time))""",
    # A candle the feed handed on that cannot be traded (botter.data.validate, or no chart can be
    # drawn from it): not traded, no chart across it, like a candle missing from the store.
    """CREATE TABLE skipped (
        time INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        reason TEXT NOT NULL,
        candle TEXT NOT NULL,           -- the row as the exchange sent it, JSON
        PRIMARY KEY (symbol, time))""",
)
NAMES = ("bars", "decisions", "orders", "fills", "skipped", "meta")


@dataclass(frozen=True)
class Fill:
    """A simulated fill at the open of candle `time` (UTC epoch ms) of the order placed at `order_time`."""

    time: int
    order_time: int
    side: str
    quantity: float
    price: float
    fee: float


@dataclass(frozen=True)
class Step:
    """Everything one symbol's closed candle adds to the ledger.

    `candle` is a ccxt row [open time ms, open, high, low, close, volume]; `probs` maps the
    probability column names (p_down, p_up, and p_flat for three classes) to values (NaN, stored
    as NULL, when the model was not asked); `signal` is the signal rule's state after the candle.
    """

    symbol: str
    candle: tuple
    fill: Fill | None
    position: float
    side: int
    cash: float
    equity: float
    probs: dict
    target: int
    signal: Held = field(default_factory=Held)

    @property
    def time(self) -> int:
        return int(self.candle[0])


@dataclass(frozen=True)
class Skip:
    """A candle of `symbol` at open time `time` that cannot be traded, why, and the row as received."""

    symbol: str
    time: int
    reason: str
    candle: list


@dataclass(frozen=True)
class State:
    """Where one symbol of a paper run stands after its last recorded candle."""

    time: int  # open time of the last recorded candle, UTC epoch ms
    position: float
    side: int
    cash: float
    equity: float
    target: int  # decided at that candle's close, to be filled at the next open
    signal: Held  # the signal rule's state after that candle


def _holder() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}, since {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M:%S} UTC"


class Ledger:
    """The SQLite ledger of one paper run.

    A writer (the default) takes the ledger's lock, creates or migrates the tables, and with `meta`
    (the settings its numbers depend on: symbols, exchange, costs, thresholds, model, ...) stores
    them in a new ledger or checks them against an existing one, so that a restart never continues
    a ledger under different rules. `readonly=True` opens it to read while a writer may be at work.
    Any trouble with the file (in use, unwritable, damaged) is a BotterError of one line.
    """

    def __init__(self, path: str | Path, meta: dict | None = None, *, readonly: bool = False):
        self.path = Path(path)
        self.db = self._lock = None
        if self.path.is_file() and self.path.stat().st_size == 0:  # SQLite would take it for a new ledger
            raise BotterError(f"the paper ledger {self.path} is an empty file (0 bytes), not a ledger: it records "
                              "nothing; delete it (this name then starts afresh) or give another name=")
        try:
            with self._trouble():
                if readonly:
                    self._open_readonly()
                else:
                    self._open_writer(meta)
        except BaseException:
            self.close()
            raise

    def _open_readonly(self) -> None:
        """Open to read, writing nothing: no migration; an old or empty ledger is refused."""
        if not self.path.exists():
            raise BotterError(f"no paper ledger at {self.path}")
        # mode=ro: no write to the ledger itself. Not immutable=1, which would spare a WAL ledger's
        # -wal and -shm files (SQLite's own, created to read it): a writer that starts during the
        # read could checkpoint into the file under an immutable reader, which would then read torn pages.
        self.db = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
        self._check_file()
        version = self._version()
        self._check_version(version)
        if version < VERSION:  # only a writer migrates: a reader (the dashboard, a status) never writes
            what = "holds no tables yet" if version == 0 else f"has schema version {version}, older than {VERSION}"
            raise BotterError(f"the paper ledger {self.path} {what}: resume it with botter-paper (the same run_dir "
                              "and name=) to migrate it, then read it")

    def _open_writer(self, meta: dict | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        # isolation_level=None: transactions are explicit (BEGIN ... COMMIT in `record`).
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives any crash of this process; only a power cut can drop the last
        # commits, and those candles are then simply decided again from the feed on restart.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._check_file()
        version = self._version()
        self._check_version(version)
        # Always a write, so that a ledger this process cannot write fails here, not at its first candle.
        with self._transaction():
            if version == 0:  # a new file
                for sql in TABLES:
                    self.db.execute(sql)
                version = VERSION
            for v in range(version, VERSION):
                MIGRATIONS[v](self.db)
                log.info("migrated the paper ledger %s from schema version %d to %d", self.path, v, v + 1)
            self.db.execute(f"PRAGMA user_version = {VERSION}")
        if meta is not None:
            self._check_meta(meta)

    def _take_lock(self) -> None:
        """Hold `<ledger>.lock` for as long as this writer lives, its holder written in it."""
        lock = open(self.path.with_name(self.path.name + ".lock"), "a+")  # noqa: SIM115 (held until close())
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "a process that is just starting"
            lock.close()
            raise BotterError(f"the paper ledger {self.path} is in use by another botter-paper ({holder}): "
                              "stop that one first, or give this run another name=") from None
        lock.seek(0)
        lock.truncate()
        lock.write(_holder() + "\n")
        lock.flush()
        self._lock = lock

    def _check_file(self) -> None:
        """A damaged file (truncated, overwritten) fails here, at open, not in the middle of a run."""
        problems = [r[0] for r in self.db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"{problems[0]}{' ...' if len(problems) > 1 else ''}")

    def _version(self) -> int:
        """The schema version: PRAGMA user_version, or 1 for a ledger written before there was one
        (tables but no version), 0 for a new file."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'bars'").fetchone():
            return 1
        return version

    def _check_version(self, version: int) -> None:
        if version > VERSION:
            raise BotterError(f"the paper ledger {self.path} has schema version {version}, this botter reads up "
                              f"to {VERSION}: use the botter that wrote it (or a newer one)")

    @contextmanager
    def _trouble(self):
        """sqlite3 and file-system errors as one line that says what is wrong with the ledger."""
        try:
            yield
        except (sqlite3.DatabaseError, OSError) as e:
            text = str(e)
            if isinstance(e, PermissionError) or any(
                    w in text for w in ("readonly", "unable to open", "Permission", "Read-only")):
                raise BotterError(f"cannot write the paper ledger {self.path} ({text}): botter-paper needs to "
                                  f"write in {self.path.parent} (the ledger, its -wal, -shm and .lock files, "
                                  "paper.log); fix the permissions or give another name=") from e
            if isinstance(e, sqlite3.OperationalError) and "locked" in text:
                raise BotterError(f"the paper ledger {self.path} is locked by another program ({text}): "
                                  "close it and try again") from e
            if isinstance(e, OSError):
                raise BotterError(f"cannot use the paper ledger {self.path} ({e})") from e
            raise BotterError(f"{self.path} is not a readable paper ledger ({text}): it is damaged; move it "
                              "away (this name then starts afresh) or give another name=") from e

    @contextmanager
    def _transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _check_meta(self, meta: dict) -> None:
        stored, last = self.meta(), self.last_time()
        if not stored and last is not None:
            raise BotterError(f"the paper ledger {self.path} holds candles but not the settings they were traded "
                              "under (its meta table is empty): it was altered; restore it from a copy or give "
                              "this run another name=")
        if last is None:  # nothing traded yet: the settings are free to change
            with self._transaction():
                self.db.execute("DELETE FROM meta")
                self._write_meta(meta)
            return
        differ = {k: (stored[k], v) for k, v in meta.items() if k in stored and stored[k] != v}
        if differ:
            what = "; ".join(f"{k}: ledger has {a!r}, now {b!r}" for k, (a, b) in differ.items())
            raise BotterError(
                f"the paper ledger {self.path} was made with other settings ({what}): "
                "give this run another paper name (name=...) or delete that ledger"
            )
        unrecorded = {k: v for k, v in meta.items() if k not in stored}
        if unrecorded:  # a ledger from before these settings were recorded: from now on they are
            log.warning("the paper ledger %s did not record %s: taking this run's (%s)", self.path,
                        ", ".join(unrecorded), ", ".join(f"{k}={v!r}" for k, v in unrecorded.items()))
            with self._transaction():
                self._write_meta(unrecorded)

    def _write_meta(self, meta: dict) -> None:
        self.db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])

    def meta(self) -> dict:
        """The settings the ledger was made with."""
        with self._trouble():
            rows = self.db.execute("SELECT key, value FROM meta").fetchall()
        try:
            return {k: json.loads(v) for k, v in rows}
        except (json.JSONDecodeError, TypeError) as e:
            raise BotterError(f"the paper ledger {self.path} has damaged settings (meta: {e}): restore it from a "
                              "copy or give this run another name=") from e

    def symbols(self) -> list[str]:
        """The symbols the ledger trades (its settings' `symbols`, else those it has candles of)."""
        meta = self.meta()
        if "symbols" in meta:
            return list(meta["symbols"])
        with self._trouble():
            return [r[0] for r in self.db.execute("SELECT DISTINCT symbol FROM bars ORDER BY symbol")]

    def states(self) -> dict[str, State]:
        """{symbol: its account after its last recorded candle} for each symbol with one (one index
        lookup each: what a restart reads, whatever the ledger's length)."""
        out = {}
        with self._trouble():
            for symbol in self.symbols():
                row = self.db.execute(
                    "SELECT b.time, b.position, b.side, b.cash, b.equity, d.target, d.signal, d.held"
                    " FROM bars b JOIN decisions d USING (symbol, time) WHERE b.symbol = ?"
                    " ORDER BY b.time DESC LIMIT 1", (symbol,)).fetchone()
                if row is not None:
                    out[symbol] = State(*row[:6], Held(row[6], row[7]))
        return out

    def last_time(self) -> int | None:
        """The open time of the newest candle recorded, traded or skipped; None for an empty ledger."""
        times = [s.time for s in self.states().values()]
        with self._trouble():
            skipped = self.db.execute("SELECT max(time) FROM skipped").fetchone()[0]
        times += [] if skipped is None else [skipped]
        return max(times, default=None)

    def record(self, steps: list[Step], skipped: list[Skip] = ()) -> None:
        """Write one candle time: each symbol's fill, bar, decision and order, and the candles skipped,
        in one transaction. A candle already recorded raises BotterError and writes nothing."""
        try:
            with self._trouble(), self._transaction():
                for step in steps:
                    self._insert_step(step)
                for s in skipped:
                    self.db.execute("INSERT INTO skipped (time, symbol, reason, candle) VALUES (?, ?, ?, ?)",
                                    (s.time, s.symbol, s.reason, json.dumps(list(s.candle))))
        except BotterError as e:
            if isinstance(e.__cause__, sqlite3.IntegrityError):
                times = sorted({s.time for s in steps} | {s.time for s in skipped})
                raise BotterError(f"candle {', '.join(str(pd.Timestamp(t, unit='ms', tz='UTC')) for t in times)} "
                                  f"is already in {self.path}: {e.__cause__}") from None
            raise

    def _insert_step(self, step: Step) -> None:
        t, symbol = step.time, step.symbol
        self._insert("bars", time=t, symbol=symbol, **dict(zip(("open", "high", "low", "close", "volume"),
                                                              map(float, step.candle[1:6]))),
                     position=step.position, side=step.side, cash=step.cash, equity=step.equity)
        if step.fill is not None:
            f = step.fill
            self._insert("fills", time=f.time, symbol=symbol, order_time=f.order_time, side=f.side,
                         quantity=f.quantity, price=f.price, fee=f.fee)
        self._insert("decisions", time=t, symbol=symbol, **step.probs, target=step.target,  # SQLite stores NaN as NULL
                     signal=step.signal.position, held=step.signal.candles)
        if step.target != step.side:
            self._insert("orders", time=t, symbol=symbol, side="buy" if step.target > step.side else "sell",
                         target=step.target)

    def _insert(self, table: str, **row) -> None:
        self.db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                        tuple(row.values()))

    def table(self, name: str) -> pd.DataFrame:
        """One table as a DataFrame in time order, times as UTC timestamps (bars, decisions, orders,
        fills, skipped, meta)."""
        if name not in NAMES:
            raise BotterError(f"no ledger table {name!r}: use {', '.join(NAMES)}")
        with self._trouble():
            df = pd.read_sql_query(f"SELECT * FROM {name} ORDER BY {'key' if name == 'meta' else 'time, symbol'}",
                                   self.db)
        for col in ("time", "order_time"):
            if col in df:
                df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
        return df

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
        if self._lock is not None:
            self._lock.close()  # drops the lock
        self.db = self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _from_v1(db: sqlite3.Connection) -> None:
    """Version 1 -> 2: one symbol (meta `symbol`) -> tables keyed by (symbol, time), `symbols` in meta,
    the signal rule's state per decision, a table of skipped candles."""
    meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
    symbol = meta.pop("symbol", None)
    if symbol is None and db.execute("SELECT 1 FROM bars").fetchone():
        raise BotterError("this version-1 paper ledger records no symbol: it cannot be migrated; give another name=")
    for name in ("meta", "bars", "decisions", "orders", "fills"):
        db.execute(f"ALTER TABLE {name} RENAME TO v1_{name}")
    for sql in TABLES:
        db.execute(sql)
    if symbol is not None:
        meta["symbols"] = [symbol]
    db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
    db.execute("INSERT INTO bars (time, symbol, open, high, low, close, volume, position, side, cash, equity)"
               " SELECT time, ?, open, high, low, close, volume, position, side, cash, equity FROM v1_bars", (symbol,))
    # The signal's state: version 1 recomputed it from the charted decisions' targets (equal to the
    # signal's but after a ruin, when nothing trades any more), so it is rebuilt from them, once.
    held, rows = Held(), []
    for t, p_down, p_up, p_flat, target in db.execute(
            "SELECT time, p_down, p_up, p_flat, target FROM v1_decisions ORDER BY time"):
        if p_up is not None and p_down is not None:
            held = held.after([target])
        rows.append((t, symbol, p_down, p_up, p_flat, target, held.position, held.candles))
    db.executemany("INSERT INTO decisions (time, symbol, p_down, p_up, p_flat, target, signal, held)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute("INSERT INTO orders (time, symbol, side, target) SELECT time, ?, side, target FROM v1_orders", (symbol,))
    db.execute("INSERT INTO fills (time, symbol, order_time, side, quantity, price, fee)"
               " SELECT time, ?, order_time, side, quantity, price, fee FROM v1_fills", (symbol,))
    for name in ("meta", "bars", "decisions", "orders", "fills"):
        db.execute(f"DROP TABLE v1_{name}")


MIGRATIONS = {1: _from_v1}  # version -> the step to the next one, run in the writer's one transaction
