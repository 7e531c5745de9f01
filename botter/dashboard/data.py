"""What botter-dashboard reads: the run folders under a folder (botter.runs) and their paper ledgers.

Every read of a ledger is in this module. Each one opens the ledger read-only
(`Ledger(path, readonly=True)`), reads inside one short read transaction, so that the figures of a
page come from one moment of the ledger even while a paper process writes it (in WAL mode a reader
never blocks the writer, and the writer never waits for a reader), and closes it again: nothing holds
a ledger between two page updates, and nothing is ever written to it.
"""

import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from botter import inference
from botter.data.candles import from_rows
from botter.dataset import COLUMNS
from botter.errors import BotterError
from botter.paper.ledger import Ledger
from botter.paper.report import curves, summary
from botter.paper.session import paper_dir
from botter.runs import Run, find, open_run

LEDGER = "ledger.sqlite"  # the ledger's file name in a paper run's folder (botter.paper.session)


def find_runs(runs_dir) -> tuple[dict[str, Run], list[tuple[str, str]]]:
    """The complete run folders under `runs_dir` (itself included, and sweep runs below it) as
    botter-runs finds them (botter.runs.find), keyed by their path relative to it ("." for runs_dir
    itself), in path order; and the folders left out (still training, killed before it finished,
    damaged, of another run format) with why, keyed alike."""
    root = Path(runs_dir)
    found, skipped = find(root)

    def key(folder) -> str:
        return Path(folder).relative_to(root).as_posix()

    return {key(run.path): run for run in found}, [(key(folder), why) for folder, why in skipped]


def run_figures(run: Run) -> dict:
    """The key figures of a run: what it is, its test metrics and the backtest of its test split
    (None for what the run does not have)."""
    metrics = run.metrics
    test, bt = metrics.get("test", {}), metrics.get("backtest", {})  # the backtest's key figures, as botter-runs reads them
    trades = bt.get("# Trades")
    return {
        "Kind": run.kind, "Symbols": ", ".join(run.symbols), "Timeframe": run.timeframe,
        "Finished": pd.Timestamp(run.meta["finished"]) if "finished" in run.meta else None,
        "Accuracy": test.get("accuracy"), "ROC AUC": test.get("roc_auc"),
        **{k: bt.get(k) for k in ("Return [%]", "Buy & Hold Return [%]", "Max. Drawdown [%]", "Sharpe Ratio")},
        "# Trades": None if trades is None else int(trades),
    }


def paper_names(run: Run) -> list[str]:
    """The names of the paper runs of `run` that have a ledger, sorted."""
    return sorted(p.parent.name for p in (run.path / "paper").glob(f"*/{LEDGER}"))


def ledger_path(run: Run, name: str) -> Path:
    """The ledger of the paper run `name` of `run`."""
    return paper_dir(run.path, name) / LEDGER


def locate(runs_dir, key: str, name: str) -> tuple[Run, Path]:
    """The complete run `key` (its folder relative to runs_dir, as `find_runs` names it) and the
    ledger of its paper run `name`. BotterError for anything else: whatever a URL asks for, nothing
    outside runs_dir is read."""
    root = Path(runs_dir).resolve()
    folder = (root / key).resolve()
    try:
        if not folder.is_relative_to(root):
            raise BotterError(f"{key!r} is not under {runs_dir}")
        run = open_run(folder)
    except BotterError as e:
        raise BotterError(f"no complete run {key!r} under {runs_dir} ({e})") from None
    if name not in paper_names(run):
        raise BotterError(f"the run {key!r} has no paper run {name!r}")
    return run, ledger_path(run, name)


@contextmanager
def reading(path):
    """The ledger at `path` open read-only, inside one read transaction; closed afterwards.

    A missing, damaged or unreadable ledger raises BotterError.
    """
    path = Path(path)
    with Ledger(path, readonly=True) as ledger:
        try:
            ledger.db.execute("BEGIN")  # a snapshot: the reads below see the same candles
            try:
                yield ledger
            finally:
                ledger.db.execute("COMMIT")  # ends the read; a read-only connection writes nothing
        except sqlite3.Error as e:
            raise BotterError(f"cannot read the paper ledger {path} ({e})") from e


def last_candle(path) -> int | None:
    """Open time (epoch ms) of the newest candle in the ledger at `path` (traded or skipped), None
    while it has none: the small query an open page makes to see whether the ledger has grown."""
    with reading(path) as ledger:
        return ledger.last_time()


@dataclass
class Paper:
    """A paper run as the page shows it, read at one moment of its ledger.

    summary: botter.paper.report.summary, one column per symbol and "portfolio" (what `botter-paper
    mode=status` prints). meta: the settings the ledger was made with; symbols: those it trades.
    curves: botter.paper.report.curves, {symbol or "portfolio": (equity, buy & hold)}. bars, fills:
    the ledger's tables (times as UTC timestamps, a `symbol` column). decisions: {symbol: its newest
    decision (time, symbol, p_down, p_up, p_flat, target, ...)}. last: open time (epoch ms) of the
    newest candle, traded or skipped; None for an empty ledger.
    """

    summary: pd.DataFrame
    meta: dict
    symbols: list[str]
    curves: dict
    bars: pd.DataFrame
    fills: pd.DataFrame
    decisions: dict
    last: int | None


class _ReadOnce:
    """A ledger whose tables are read once: summary(), curves() and the page's figures read the same
    ones (of 100,000 candles, reading the bars takes most of a page update)."""

    def __init__(self, ledger: Ledger):
        self.ledger, self.tables = ledger, {}

    def __getattr__(self, name):
        return getattr(self.ledger, name)

    def table(self, name: str) -> pd.DataFrame:
        if name not in self.tables:
            self.tables[name] = self.ledger.table(name)
        return self.tables[name]


def read_paper(path) -> Paper:
    """Everything the page shows of the paper run whose ledger is at `path`."""
    with reading(path) as ledger:
        once, symbols = _ReadOnce(ledger), ledger.symbols()
        # The newest decision of each symbol alone (the ledger has no call for it; reading all of
        # 100,000 would cost a third of the update).
        newest = {s: pd.read_sql_query("SELECT * FROM decisions WHERE symbol = ? ORDER BY time DESC LIMIT 1",
                                       ledger.db, params=(s,)) for s in symbols}
        return Paper(summary=summary(once), meta=ledger.meta(), symbols=symbols, curves=curves(once),
                     bars=once.table("bars"), fills=once.table("fills"),
                     decisions={s: d.iloc[0] for s, d in newest.items() if len(d)}, last=ledger.last_time())


def status_rows(s: pd.DataFrame) -> list[list[str]]:
    """A summary as `botter-paper mode=status` prints it, cell by cell: the header (an empty corner,
    then the columns), then one row per figure (its name, then its value in each column)."""
    cells = [[c, *(line[len(str(key)):].strip() for key, line in zip(s.index, s[c].to_string().splitlines()))]
             for c in s.columns]
    return [["", *s.columns], *([key, *(col[i + 1] for col in cells)] for i, key in enumerate(s.index))]


_predictors: dict = {}
_lock = threading.Lock()


def predictor(run: Run) -> inference.Predictor:
    """The run's model with what it reads (botter.inference.load, on the CPU), loaded once per
    version of its model.pt."""
    key = (run.path, (run.path / "model.pt").stat().st_mtime_ns)
    with _lock:
        if key not in _predictors:
            _predictors[key] = inference.load(run, device="cpu")
        return _predictors[key]


def chart(run: Run, paper: Paper, symbol: str) -> tuple[np.ndarray | None, str]:
    """The chart the model read at the close of `symbol`'s newest candle in the paper run, uint8
    (C, H, W), drawn from the ledger's candles by the dataset's own renderer (Predictor.windows),
    and a line saying what it is; (None, why) where there is no such chart."""
    p = predictor(run)
    bars = paper.bars[paper.bars["symbol"] == symbol]
    if bars.empty:
        return None, f"no {symbol} candle yet"
    when = f"{symbol} {bars['time'].iloc[-1]:%Y-%m-%d %H:%M} UTC"
    tail = bars.iloc[-p.lookback:]
    candles = from_rows(np.column_stack([tail["time"].dt.as_unit("ms").astype("int64"), tail[COLUMNS]]))
    windows = p.windows({symbol: candles}, allow_empty=True)
    if not len(windows) or windows.ends[-1] != len(candles) - 1:
        if len(candles) < p.lookback:
            return None, (f"{when}: the chart reads {p.lookback} candles; the ledger holds {len(candles)} (the "
                          "first ones came before its first candle)")
        return None, f"{when}: no chart (a gap in the {p.lookback} candles it reads): the model was not asked"
    render = p.info["render"]
    return windows.images([len(windows) - 1])[0].numpy(), (
        f"the chart the model read at the close of {when}: {p.info['window']} candles, {render['name']} "
        f"{render['height']}x{render['width']}")
