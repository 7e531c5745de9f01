"""The paper ledger: one SQLite file (WAL) per paper run, written one transaction per candle.

Each closed candle's fill, mark-to-market, decision and order go in together, keyed by the candle's
open time (`bars.time` is the primary key). A run killed at any point, SIGKILL included, leaves
either the whole candle or none of it, so a restart resumes after the last recorded candle with
nothing lost and nothing duplicated.
"""

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from botter.errors import BotterError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- One row per closed candle: the account marked to market at its close.
CREATE TABLE IF NOT EXISTS bars (
    time INTEGER PRIMARY KEY,       -- candle open time, UTC epoch ms
    open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
    position REAL NOT NULL,         -- base units held at the close (negative = short)
    side INTEGER NOT NULL,          -- -1, 0, 1: the target that position was filled for
    cash REAL NOT NULL,             -- quote units
    equity REAL NOT NULL            -- cash + position * close, quote units
);
-- The model's view at the close of the candle and the target position it leads to.
CREATE TABLE IF NOT EXISTS decisions (
    time INTEGER PRIMARY KEY REFERENCES bars(time),
    p_down REAL, p_up REAL, p_flat REAL,  -- NULL: no chart (a gap in its lookback), the model was not asked
    target INTEGER NOT NULL         -- -1, 0, 1: wanted from the next candle's open on
);
-- An order is placed at the close of `time` when the target differs from the side held.
CREATE TABLE IF NOT EXISTS orders (
    time INTEGER PRIMARY KEY REFERENCES bars(time),
    side TEXT NOT NULL,             -- buy or sell
    target INTEGER NOT NULL
);
-- Filled at the open of candle `time` (the candle after the order's).
CREATE TABLE IF NOT EXISTS fills (
    time INTEGER PRIMARY KEY REFERENCES bars(time),
    order_time INTEGER NOT NULL UNIQUE REFERENCES orders(time),
    side TEXT NOT NULL,
    quantity REAL NOT NULL,         -- base units, > 0
    price REAL NOT NULL,            -- quote per base unit, slippage included
    fee REAL NOT NULL               -- quote units
);
"""


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
    """Everything one closed candle adds to the ledger.

    `candle` is a ccxt row [open time ms, open, high, low, close, volume]; `probs` maps the
    probability column names (p_down, p_up, and p_flat for three classes) to values (NaN, stored
    as NULL, when the model was not asked).
    """

    candle: tuple
    fill: Fill | None
    position: float
    side: int
    cash: float
    equity: float
    probs: dict
    target: int

    @property
    def time(self) -> int:
        return int(self.candle[0])


@dataclass(frozen=True)
class State:
    """Where a paper run stands after its last recorded candle."""

    time: int  # open time of the last recorded candle, UTC epoch ms
    position: float
    side: int
    cash: float
    equity: float
    target: int  # decided at that candle's close, to be filled at the next open


class Ledger:
    """The SQLite ledger of one paper run.

    `meta` holds what the ledger's numbers depend on (symbol, fees, thresholds, model, ...): a new
    ledger stores it, an existing one must have been made with the same, so that a restart never
    continues a ledger under different rules.
    """

    def __init__(self, path: str | Path, meta: dict | None = None, *, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            # For a reader beside the running writer (botter-dashboard): in WAL mode it never blocks
            # the writer, and a read-only connection can write nothing, not even the checkpoint that
            # the last connection to close would otherwise run. A missing file is an error, not created.
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN ... COMMIT in `record`).
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives any crash of this process; only a power cut can drop the last
        # commits, and those candles are then simply decided again from the feed on restart.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        if meta is not None:
            self._check_meta(meta)

    def _check_meta(self, meta: dict) -> None:
        stored = self.meta()
        if not stored or self.state() is None:  # nothing traded yet: the settings are free to change
            with self.db:
                self.db.execute("BEGIN")
                self.db.execute("DELETE FROM meta")
                self.db.executemany(
                    "INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()]
                )
            return
        differ = {k: (stored.get(k), v) for k, v in meta.items() if stored.get(k) != v}
        if differ:
            what = "; ".join(f"{k}: ledger has {a!r}, now {b!r}" for k, (a, b) in differ.items())
            raise BotterError(
                f"the paper ledger {self.path} was made with other settings ({what}): "
                "give this run another paper name (name=...) or delete that ledger"
            )

    def meta(self) -> dict:
        """The settings the ledger was made with."""
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def state(self) -> State | None:
        """The account after the last recorded candle, or None for an empty ledger."""
        row = self.db.execute(
            "SELECT b.time, b.position, b.side, b.cash, b.equity, d.target"
            " FROM bars b JOIN decisions d USING (time) ORDER BY b.time DESC LIMIT 1"
        ).fetchone()
        return None if row is None else State(*row)

    def record(self, step: Step) -> None:
        """Write one candle's fill, bar, decision and order in one transaction.

        A candle already recorded raises BotterError and writes nothing.
        """
        t = step.time
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute(
                    "INSERT INTO bars VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (t, *map(float, step.candle[1:6]), step.position, step.side, step.cash, step.equity),
                )
                if step.fill is not None:
                    f = step.fill
                    self.db.execute(
                        "INSERT INTO fills VALUES (?, ?, ?, ?, ?, ?)",
                        (f.time, f.order_time, f.side, f.quantity, f.price, f.fee),
                    )
                p = step.probs
                self.db.execute(
                    "INSERT INTO decisions VALUES (?, ?, ?, ?, ?)",
                    (t, p["p_down"], p["p_up"], p.get("p_flat"), step.target),
                )
                if step.target != step.side:
                    side = "buy" if step.target > step.side else "sell"
                    self.db.execute("INSERT INTO orders VALUES (?, ?, ?)", (t, side, step.target))
        except sqlite3.IntegrityError as e:
            raise BotterError(f"candle {pd.Timestamp(t, unit='ms', tz='UTC')} is already in {self.path}: {e}")

    def table(self, name: str) -> pd.DataFrame:
        """One table as a DataFrame, times as UTC timestamps (bars, decisions, orders, fills, meta)."""
        if name not in ("bars", "decisions", "orders", "fills", "meta"):
            raise BotterError(f"no ledger table {name!r}: use bars, decisions, orders, fills or meta")
        df = pd.read_sql_query(f"SELECT * FROM {name} ORDER BY 1", self.db)
        for col in ("time", "order_time"):
            if col in df:
                df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
        return df

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
