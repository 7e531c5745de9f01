"""The paper-trading loop: each closed candle -> chart -> model -> signals -> simulated fill -> ledger.

On the close of candle t: the order decided at the close of t-1 fills at the open of t, the account
is marked at the close of t, the window ending at t is rendered and read by the model, and
botter.signals (the backtest's own rule) turns the probabilities so far into the target from t+1
on. All of it is one ledger transaction keyed by t, so the loop can be killed anywhere and started
again: it resumes after the last recorded candle. A candle whose chart would span a gap in the
candles (or reach before the first one) is not shown to the model: it is flat, like a candle
without a prediction in the backtest.
"""

import logging
import threading
from collections import deque

import numpy as np
import pandas as pd

from botter.backtest import check_costs
from botter.data.candles import from_rows
from botter.inference import Predictor
from botter.paper.broker import Broker
from botter.paper.ledger import Ledger, State, Step
from botter.signals import positions

log = logging.getLogger(__name__)


class Trader:
    """Decides on each closed candle with a trained model and trades the decision on paper.

    predictor: the run's model (botter.inference.load). broker: the paper account, already in the
    state the ledger records (see `resume`). signals: keyword arguments of botter.signals.positions
    (threshold_up, threshold_down, long_only, min_hold). decisions: the ledger's decisions so far
    (the signal rule reads the whole probability history); state: the ledger's last candle, whose
    target is still to be filled.
    """

    def __init__(self, predictor: Predictor, broker: Broker, signals: dict, *,
                 decisions: pd.DataFrame | None = None, state: State | None = None):
        self.predictor, self.broker, self.signals = predictor, broker, dict(signals)
        self.columns = predictor.columns
        self.lookback = predictor.lookback
        # Candles decided without a chart (NULL probabilities) are not in the history the signal
        # rule reads, as the backtest reads only candles with a prediction: min_hold counts the same.
        asked = None if decisions is None else decisions.dropna(subset=["p_up", "p_down"])
        self.p_up = [] if asked is None else asked["p_up"].astype(float).tolist()
        self.p_down = [] if asked is None else asked["p_down"].astype(float).tolist()
        self.pending = None if state is None else (state.time, state.target)

    def probabilities(self, rows) -> dict | None:
        """The model's class probabilities for the chart ending at the last of `rows`, by the
        dataset's own rule and the run's numeric path; None where no chart ends there (its
        `lookback` candles are not consecutive in the market's trading time)."""
        candles = from_rows(list(rows)[-self.lookback:])
        windows = self.predictor.windows({"paper": candles}, allow_empty=True)
        if not len(windows) or windows.ends[-1] != len(candles) - 1:
            return None
        p = self.predictor.probabilities(windows.take([-1]))[0]  # (classes,)
        return {c: float(v) for c, v in zip(self.columns, p)}

    def step(self, rows) -> Step:
        """Trade the close of the last of `rows`: ccxt rows [open time ms, open, high, low, close,
        volume] of closed candles, oldest first, unique. Without `lookback` consecutive candles at
        the end the model is not asked: the target is flat and the probabilities are NaN."""
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
            self.p_up.append(probs["p_up"])
            self.p_down.append(probs["p_down"])
            target = int(positions(np.array(self.p_up), np.array(self.p_down), **self.signals)[-1])
        else:
            probs, target = dict.fromkeys(self.columns, float("nan")), 0
        target = 0 if b.ruined else target
        self.pending = (t, target)
        return Step(candle=row, fill=fill, position=b.position, side=b.side, cash=b.cash,
                    equity=equity, probs=probs, target=target)


def resume(ledger: Ledger, predictor: Predictor, *, signals: dict, cash: float, fee: float,
           slippage_bps: float, size: float) -> Trader:
    """A Trader in the state the ledger left (a fresh account of `cash` for an empty ledger; any state a
    ledger holds, a long at size 1 with cash just below 0 or a ruined account included)."""
    state = ledger.state()
    check_costs(fee, slippage_bps, size, cash)  # the settings; a running account's cash may be anything
    broker = Broker(cash=cash, fee=fee, slippage_bps=slippage_bps, size=size)
    if state is not None:
        broker = Broker(cash=state.cash, fee=fee, slippage_bps=slippage_bps, size=size,
                        position=state.position, side=state.side)
    return Trader(predictor, broker, signals, decisions=ledger.table("decisions"), state=state)


def run(feed, trader: Trader, ledger: Ledger, *, stop: threading.Event | None = None) -> int:
    """Trade every candle `feed` hands on after the ledger's last one; returns how many were recorded.

    feed: a botter.paper.feeds feed (Replay, Poll). Ends when the feed ends or `stop` is set
    (checked after each recorded candle and inside the feed's waits).
    """
    stop = stop or threading.Event()
    state = ledger.state()
    last = -1 if state is None else state.time
    history, candles = feed.open(None if state is None else last + 1, trader.lookback - 1)
    window = deque(history, maxlen=trader.lookback)
    # A replay shows a progress bar and its fills are in the ledger; a live feed logs each fill.
    level = getattr(feed, "log_level", logging.INFO)
    n = 0
    for row in candles:
        if row[0] <= last:
            continue  # recorded already: a feed may hand a candle on twice
        window.append(row)
        step = trader.step(window)
        ledger.record(step)
        if step.fill is not None:
            f = step.fill
            log.log(level, "%s %s %.8g @ %.8g (fee %.3g); equity %.8g", pd.Timestamp(f.time, unit="ms", tz="UTC"),
                    f.side, f.quantity, f.price, f.fee, step.equity)
        last, n = step.time, n + 1
        if stop.is_set():
            break
    return n
