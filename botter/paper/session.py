"""A paper run of a trained model: its folder, its feed, its ledger; started, resumed, reported.

`<run_dir>/paper/<name>/` holds one paper run: ledger.sqlite, equity.png and the log. Several
paper runs of one model (replay, live, other costs) live side by side under other names.
"""

import hashlib
import logging
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch

from botter import inference
from botter.data import load
from botter.data.candles import between, to_ms
from botter.data.fetch import make_exchange
from botter.dataset import chartable
from botter.errors import BotterError
from botter.paper import loop
from botter.paper.feeds import Poll, Replay
from botter.paper.ledger import Ledger
from botter.paper.report import plot_equity, summary
from botter.runs import Run, open_run, plain_name

log = logging.getLogger(__name__)

SIGNAL_KEYS = ("threshold_up", "threshold_down", "long_only", "min_hold")
COST_KEYS = ("cash", "fee", "slippage_bps", "size")
POLL_KEYS = ("poll_s", "retry_s", "max_retry_s", "start_tries", "stale_after", "missing_after")


def paper_dir(run_dir, name: str) -> Path:
    """The folder of the paper run `name` of a training run: <run_dir>/paper/<name>/. The name is one
    plain folder name, so that a paper run never writes outside its training run's paper folder."""
    folder = Path(run_dir) / "paper" / plain_name(name, "name", Path(run_dir) / "paper")
    if folder.is_symlink() or (Path(run_dir) / "paper").is_symlink():
        raise BotterError(f"{folder} is a symbolic link: a paper run lives in its training run's own folder; "
                          "remove the link or give another name=")
    return folder


def recorded(path: Path) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    """{symbol: (first, last) candle} a ledger holds already ({} where there is none yet)."""
    if not path.exists():
        return {}
    with Ledger(path) as ledger:  # as the writer that resumes it: an older ledger is migrated first
        bars = ledger.table("bars")
    return {s: (t.min(), t.max()) for s, t in bars.groupby("symbol")["time"]}


def replay_period(run: Run, symbol: str, candles: pd.DataFrame, start=None, end=None) -> tuple:
    """First and last candle (inclusive) to replay for decisions at open times in [start, end), as
    botter-backtest's period: the candle that fills the last decision is replayed too. Without
    start, from the run's test period of `symbol` (out of sample); without end, to the end of it."""
    if start is None:
        test = run.test_period(symbol)
        if test is None:
            raise BotterError(f"the run has no test period for {symbol}: give feed.start= (and feed.end=)")
        start = test[0]
        end = end if end is not None else test[1] + pd.Timedelta(1, "ms")
    if end is None:
        return start, None
    fills = candles.index.searchsorted(pd.Timestamp(to_ms(end), unit="ms", tz="UTC"))
    return start, candles.index[min(fills, len(candles) - 1)]


def skipped_on_resume(held: dict, candles: dict, periods: dict) -> list[str]:
    """A line per symbol whose replay, resuming a ledger that holds `held` ({symbol: (first, last)
    candle}), starts later than the candle after its last one: the candles between are never traded."""
    lines = []
    for symbol, (_, last) in held.items():
        if symbol not in periods:
            continue
        start = pd.Timestamp(to_ms(periods[symbol][0]), unit="ms", tz="UTC")
        index = candles[symbol].index
        n = int(((index > last) & (index < start)).sum())
        if n:
            lines.append(f"{symbol}: the ledger ends at {last}, the replay starts at feed.start={start}: the {n} "
                         "candles between are not traded (leave feed.start out to go on where the ledger ends)")
    return lines


@contextmanager
def stop_on_signals():
    """An Event set by SIGINT or SIGTERM while the block runs: the loop finishes its candle and stops."""
    stop = threading.Event()

    def handler(signum, frame):
        log.warning("%s: stopping after this candle", signal.Signals(signum).name)
        stop.set()

    # Only the main thread may install handlers; in another thread the run ends with its feed.
    main = threading.current_thread() is threading.main_thread()
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def log_to(path):
    """Append botter's log lines to `path` while the block runs (the paper run's own log)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("botter")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


@contextmanager
def torch_threads(n: int | None):
    """Run torch on `n` threads in the block (None: leave it). One small image per decision gains
    little from more threads, and on a busy machine they wait for each other: the `small` model
    took 8 ms on 1 thread and 40-70 ms on 2 here; a big one (jkx20) gains from 2 when they are free."""
    threads = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def trade(run_dir, *, name: str, feed: dict, backtest: dict, symbols: list[str] | None = None,
          exchange: dict | None = None, validate: dict | None = None, data_dir=None, threads: int | None = 1,
          progress: bool = True, allow_in_sample: bool = False) -> pd.DataFrame:
    """Paper-trade the run's model on `feed` until it ends or SIGINT/SIGTERM; returns the summary.

    feed: the feed config ({"name": "replay", source, start, end, pace} or {"name": "ccxt", poll_s, ...}).
    backtest: the backtest settings (cash, fee, slippage_bps, size and the signal thresholds, min_hold
    a number). symbols: the symbols of the one account (None: the run's), each trading an equal share
    of the cash as in the backtest's portfolio. exchange: {"id", "ccxt_config", "sandbox"}.
    validate: botter-fetch's validation policy, applied to the live feed's candles. data_dir: the
    candle store. threads: torch threads for the decisions (None: torch's default). A replay over
    candles the model was fitted or early-stopped on is refused unless allow_in_sample (then marked
    IN-SAMPLE). Started again with the same name, it resumes after the last candle in the ledger.
    """
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise BotterError(f"threads={threads} must be a whole number >= 1, or null for torch's default")
    folder = paper_dir(run_dir, name)
    run = open_run(run_dir)
    symbols = list(symbols or run.symbols)
    if len(set(symbols)) != len(symbols):
        raise BotterError(f"symbols={symbols} names a symbol twice: give each once")
    predictor = inference.load(run)
    info = predictor.info
    signals = {k: backtest[k] for k in SIGNAL_KEYS}
    costs = {k: backtest[k] for k in COST_KEYS}
    exchange = exchange or {}
    d = run.config["data"]
    if feed["name"] == "replay":
        source = feed.get("source") or d["source"]
        if source == d["source"]:  # the candles the run was made from
            exchange_id = d["exchange"]
            candles = load(source, symbols, d["timeframe"], exchange=exchange_id, data_dir=data_dir,
                           **d.get("params", {}))
        else:
            exchange_id = exchange.get("id", d["exchange"])
            candles = load(source, symbols, d["timeframe"], data_dir=data_dir, exchange=exchange_id)
        candles = chartable(candles)  # the backtest's candles: one no chart is drawn from is a missing one
        periods = {s: replay_period(run, s, candles[s], feed["start"], feed["end"]) for s in symbols}
        decisions = {}
        for s, (start, end) in periods.items():
            span = between(candles[s], start, None if end is None else pd.Timestamp(to_ms(end) + 1, unit="ms", tz="UTC"))
            if span.empty:
                raise BotterError(f"no {s} candle between feed.start={start} and feed.end={end}: pick dates "
                                  f"inside {candles[s].index[0]} .. {candles[s].index[-1]}")
            decisions[s] = (span.index[0], span.index[-1])
        sandbox = False
    elif feed["name"] == "ccxt":
        source, exchange_id, sandbox = "exchange", exchange.get("id", "binance"), bool(exchange.get("sandbox", False))
        if validate is None:
            raise BotterError("the live feed needs the validation policy (validate, as botter-fetch's)")
        ex = make_exchange(exchange_id, exchange.get("ccxt_config"), sandbox=sandbox)  # a bad id: refused before a file
        # Paper trading reads public candles only: with no key it cannot sign a request, so a
        # key in the environment is never sent, and no code path can place a real order.
        ex.apiKey = ex.secret = ex.password = ""
        # A live run is out of sample by its clock; each candle is checked against the fitted
        # period all the same (`starts` below), as the exchange's clock, not ours, dates them.
        decisions = dict.fromkeys(symbols, (pd.Timestamp.now(tz="UTC"),) * 2)
    else:
        raise BotterError(f"feed={feed['name']!r} is not one of: replay, ccxt")
    held = recorded(folder / "ledger.sqlite")
    skipped = skipped_on_resume(held, candles, periods) if feed["name"] == "replay" else []
    for symbol, (first, last) in held.items():  # what a resumed ledger holds
        if symbol in decisions:
            decisions[symbol] = (min(first, pd.Timestamp(decisions[symbol][0])), max(last, pd.Timestamp(decisions[symbol][1])))
    in_sample = run.guard(decisions, allow=allow_in_sample, what="this paper run", data_dir=data_dir,
                          candles=candles if feed["name"] == "replay" else None)
    # Everything that makes the run what it is: a ledger resumes only under the same.
    meta = {"symbols": symbols, "timeframe": info["timeframe"], "feed": feed["name"], "source": source,
            "exchange": exchange_id, "sandbox": sandbox,
            "model_sha256": hashlib.sha256((Path(run_dir) / "model.pt").read_bytes()).hexdigest(),
            "sample": "IN-SAMPLE" if in_sample else "out-of-sample", **costs, **signals}
    with Ledger(folder / "ledger.sqlite", meta) as ledger, stop_on_signals() as stop, torch_threads(threads), \
            log_to(folder / "paper.log"):
        traders = loop.resume(ledger, predictor, symbols, signals=signals, **costs)
        if feed["name"] == "replay":
            candle_feed = Replay(candles, start={s: p[0] for s, p in periods.items()},
                                 end={s: p[1] for s, p in periods.items()}, pace=feed["pace"], stop=stop,
                                 progress=progress)
        else:
            candle_feed = Poll(ex, symbols, info["timeframe"], policy=validate, stop=stop,
                               **{k: feed[k] for k in POLL_KEYS})
        for line in skipped:
            log.warning(line)
        last = ledger.last_time()
        log.info("paper run %s: %s %s on the %s feed, %s, %s", folder, ", ".join(symbols), info["timeframe"],
                 feed["name"], meta["sample"],
                 "new" if last is None else f"resuming after {pd.Timestamp(last, unit='ms', tz='UTC')}")
        starts = None
        if not in_sample:
            starts = {s: to_ms(t) for s in symbols if (t := run.out_of_sample_from(s)) is not None}
        n = loop.run(candle_feed, traders, ledger, stop=stop, out_of_sample_from=starts)
        log.info("%d candle times traded", n)
        return summary(ledger)


def status(run_dir, name: str) -> tuple[pd.Series, Path]:
    """The summary of paper run `name` and its equity curve, written to equity.png beside the ledger."""
    path = paper_dir(run_dir, name) / "ledger.sqlite"
    if not path.exists():
        raise BotterError(f"no paper run {name!r} in {run_dir} ({path} is missing): "
                          f"start one with botter-paper run_dir={run_dir} name={name}")
    with Ledger(path, readonly=True) as ledger:
        if not ledger.states():  # skipped candles alone are no account to show
            raise BotterError(f"the paper run {name!r} has not traded a candle yet: run it first")
        png = path.parent / "equity.png"
        plot_equity(ledger, png)
        return summary(ledger), png
