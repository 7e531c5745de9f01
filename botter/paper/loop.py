"""The paper-trading loop: each closed candle -> chart -> model -> signals -> simulated fill -> ledger.

On the close of candle t, for each symbol with a candle at t: the order decided at the close of its
previous candle fills at the open of t, its share of the account is marked at the close of t, the
window ending at t is rendered and read by the model, and botter.signals (the backtest's own rule,
its state carried from the candle before) turns the probabilities into the target from its next
candle on. All of one candle time is one ledger transaction, so the loop can be killed anywhere and
started again: it resumes after the last recorded candle time.

A candle whose chart would span a gap in the candles (or reach before the first one) is not shown to
the model: it is flat, like a candle without a prediction in the backtest. A candle the feed skips as
untradeable is recorded as skipped and is otherwise a missing candle: no fill at its open, no chart
across it; an order waiting for it fills at the next tradeable candle's open.

Several symbols make one account as the backtest's portfolio does (botter.backtest.portfolio): each
symbol trades its own equal share of the cash, with no rebalancing.
"""

import logging
import threading
from collections import deque

import pandas as pd

from botter.backtest import check_costs
from botter.data.candles import from_rows, to_ms
from botter.errors import BotterError
from botter.inference import Predictor
from botter.paper.broker import Broker
from botter.paper.ledger import Ledger, State, Step
from botter.signals import Held, positions

log = logging.getLogger(__name__)


class Trader:
    """Decides on each closed candle of one symbol with a trained model and trades the decision on paper.

    predictor: the run's model (botter.inference.load). broker: the symbol's paper account, already
    in the state the ledger records (see `resume`). signals: keyword arguments of
    botter.signals.positions (threshold_up, threshold_down, long_only, min_hold). state: the
    ledger's last candle of the symbol, whose target is still to be filled and whose signal state
    the next decision goes on from. Each decision costs the same however long the ledger is.
    """

    def __init__(self, symbol: str, predictor: Predictor, broker: Broker, signals: dict, *,
                 state: State | None = None):
        self.symbol, self.predictor, self.broker, self.signals = symbol, predictor, broker, dict(signals)
        self.columns = predictor.columns
        self.lookback = predictor.lookback
        self.held = Held() if state is None else state.signal
        self.pending = None if state is None else (state.time, state.target)

    def probabilities(self, rows) -> dict | None:
        """The model's class probabilities for the chart ending at the last of `rows`, by the
        dataset's own rule and the run's numeric path; None where no chart ends there (its
        `lookback` candles are not consecutive in the market's trading time)."""
        candles = from_rows(list(rows)[-self.lookback:])
        windows = self.predictor.windows({self.symbol: candles}, allow_empty=True)
        # by time: a candle no chart can be drawn from is left out of the windows' table
        if not len(windows) or windows.table.times[windows.ends[-1]] != to_ms(candles.index[-1]):
            return None
        p = self.predictor.probabilities(windows.take([-1]))[0]  # (classes,)
        return {c: float(v) for c, v in zip(self.columns, p)}

    def step(self, rows) -> Step:
        """Trade the close of the last of `rows`: ccxt rows [open time ms, open, high, low, close,
        volume] of closed candles, oldest first, unique. Without `lookback` consecutive candles at
        the end the model is not asked: the target is flat, the probabilities are NaN and the signal
        rule's state stays as it was (the backtest reads only candles with a prediction)."""
        row = tuple(rows[-1])
        t, o, c = int(row[0]), float(row[1]), float(row[4])
        fill = None
        if self.pending is not None:
            order_time, target = self.pending
            fill = self.broker.execute(target, o, time=t, order_time=order_time)
        b = self.broker
        equity = b.mark(c)  # the ruin rule: marked at <= 0, the account is closed out and trades no more
        probs = self.probabilities(rows)
        if probs is not None:
            wanted = positions([probs["p_up"]], [probs["p_down"]], **self.signals, held=self.held)
            self.held = self.held.after(wanted)
            target = int(wanted[0])
        else:
            probs, target = dict.fromkeys(self.columns, float("nan")), 0
        target = 0 if b.ruined else target
        self.pending = (t, target)
        return Step(symbol=self.symbol, candle=row, fill=fill, position=b.position, side=b.side, cash=b.cash,
                    equity=equity, probs=probs, target=target, signal=self.held)


def resume(ledger: Ledger, predictor: Predictor, symbols: list[str], *, signals: dict, cash: float, fee: float,
           slippage_bps: float, size: float) -> dict[str, Trader]:
    """{symbol: Trader} in the state the ledger left (a fresh account of cash / len(symbols) for a
    symbol it has no candle of; any state a ledger holds, a long at size 1 with cash just below 0 or
    a ruined account included). Reads one row per symbol, however long the ledger."""
    states = ledger.states()
    check_costs(fee, slippage_bps, size, cash)  # the settings; a running account's cash may be anything
    costs = {"fee": fee, "slippage_bps": slippage_bps, "size": size}
    traders = {}
    for symbol in symbols:
        state = states.get(symbol)
        broker = (Broker(cash=cash / len(symbols), **costs) if state is None else
                  Broker(cash=state.cash, position=state.position, side=state.side, **costs))
        traders[symbol] = Trader(symbol, predictor, broker, signals, state=state)
    return traders


def run(feed, traders: dict[str, Trader], ledger: Ledger, *, stop: threading.Event | None = None,
        out_of_sample_from: dict | None = None) -> int:
    """Trade every candle time `feed` hands on after the ledger's last one; returns how many were traded.

    feed: a botter.paper.feeds feed (Replay, Poll). Ends when the feed ends or `stop` is set
    (checked after each recorded candle time and inside the feed's waits). out_of_sample_from:
    {symbol: epoch ms} when the model is out of sample for it (botter.runs.Run.out_of_sample_from);
    an earlier candle of that symbol stops the run with a BotterError before it is recorded (a live
    feed whose exchange clock lies in or before the training period).
    """
    stop = stop or threading.Event()
    last = ledger.last_time()
    last = -1 if last is None else last
    lookback = max(t.lookback for t in traders.values())
    history, batches = feed.open(None if last < 0 else last + 1, lookback - 1)
    windows = {s: deque(history.get(s, []), maxlen=lookback) for s in traders}
    # A replay shows a progress bar and its fills are in the ledger; a live feed logs each fill.
    level = getattr(feed, "log_level", logging.INFO)
    n = 0
    for batch in batches:
        if batch.time <= last:
            continue  # recorded already: a feed may hand a candle time on twice
        steps = []
        for symbol, row in batch.rows.items():
            start = (out_of_sample_from or {}).get(symbol)
            if start is not None and batch.time < start:
                raise BotterError(f"the feed hands on a {symbol} candle of {pd.Timestamp(batch.time, unit='ms', tz='UTC')}, "
                                  "before the end of the period the model was fitted on: a live run trades after it (replay "
                                  "that period with feed=replay allow_in_sample=true to see it, marked IN-SAMPLE)")
            windows[symbol].append(row)
            steps.append(traders[symbol].step(windows[symbol]))
        for skip in batch.skipped:
            log.warning("%s candle %s skipped, not traded: %s; as sent: %s", skip.symbol,
                        pd.Timestamp(skip.time, unit="ms", tz="UTC"), skip.reason, skip.candle)
        ledger.record(steps, batch.skipped)
        for step in steps:
            if step.fill is not None:
                f = step.fill
                log.log(level, "%s %s %s %.8g @ %.8g (fee %.3g); equity %.8g", pd.Timestamp(f.time, unit="ms", tz="UTC"),
                        step.symbol, f.side, f.quantity, f.price, f.fee, step.equity)
        last, n = batch.time, n + bool(steps)
        if stop.is_set():
            break
    return n
