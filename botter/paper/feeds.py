"""Candle feeds for paper trading: stored candles replayed, or an exchange's public candles polled.

A feed hands the loop one `Batch` per candle open time, oldest first: the closed candle of each
symbol that has one, as a ccxt row [open time ms, open, high, low, close, volume], and the candles
it skipped as untradeable. `open(since, warmup)` returns (history, batches): `history` holds, per
symbol, up to `warmup` closed candles before the first one to trade (for the chart window),
`batches` an iterator of the candle times to trade, starting at open time `since` (or where the
feed starts when `since` is None). Nothing here can place an order: feeds only read candles.
"""

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import ccxt
import numpy as np
import pandas as pd
import torch

from botter.data.candles import from_rows, timeframe_ms, to_ms
from botter.data.fetch import RETRY, call, check_market, page_size
from botter.data.validate import PROBLEMS, apply_policy, check_policy
from botter.errors import BotterError
from botter.paper.ledger import Skip
from botter.progress import bar
from botter.render import bad_candles

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """One candle open time: `rows` {symbol: ccxt row} of the symbols with a tradeable closed candle
    then, `skipped` the candles of that time that cannot be traded (botter.paper.ledger.Skip)."""

    time: int
    rows: dict[str, list] = field(default_factory=dict)
    skipped: list[Skip] = field(default_factory=list)


def _rows(df: pd.DataFrame) -> np.ndarray:
    """A Candles frame as ccxt rows, (N, 6) float64 with the open time in ms in column 0."""
    t = df.index.as_unit("ms").asi8.astype(np.float64)
    return np.column_stack([t, df[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)])


def _per_symbol(value, symbol):
    return value.get(symbol) if isinstance(value, dict) else value


class Replay:
    """Stored candles of one or more symbols played one candle time at a time, as fast as possible or
    `pace` s apart.

    candles: {symbol: Candles frame}; start/end: the open times of the first and last candle to
    trade (inclusive), one for all symbols or {symbol: time} (None: from the first candle with
    `warmup` candles before it / to the last); stop: set it to end the replay (and any pacing wait)
    early. Stored candles were validated when they were stored: none is skipped.
    """

    log_level = logging.DEBUG  # its fills are not logged one by one: the progress bar shows it moving

    def __init__(self, candles: dict[str, pd.DataFrame], *, start=None, end=None, pace: float = 0.0,
                 stop: threading.Event | None = None, progress: bool = True):
        self.symbols = list(candles)
        self.rows = [_rows(df) for df in candles.values()]
        self.times = [rows[:, 0].astype(np.int64) for rows in self.rows]
        self.start = [None if _per_symbol(start, s) is None else to_ms(_per_symbol(start, s)) for s in self.symbols]
        self.stop_at = [len(t) if _per_symbol(end, s) is None else int(np.searchsorted(t, to_ms(_per_symbol(end, s)),
                                                                                       "right"))
                        for s, t in zip(self.symbols, self.times)]
        self.pace = pace
        self.stop = stop or threading.Event()
        self.progress = progress

    def open(self, since: int | None, warmup: int) -> tuple[dict, Iterator[Batch]]:
        firsts, history = [], {}
        for symbol, rows, times, start in zip(self.symbols, self.rows, self.times, self.start):
            if since is None and start is None:
                first = min(warmup, len(times))
            else:
                first = int(np.searchsorted(times, max(since or 0, start or 0)))
            firsts.append(first)
            history[symbol] = [list(r) for r in rows[max(0, first - warmup) : first]]
        return history, self._play(firsts)

    def _play(self, firsts: list[int]) -> Iterator[Batch]:
        # Every symbol's candles to trade, in time order (then symbol order), one Batch per open time.
        spans = [(k, first, max(first, stop)) for k, (first, stop) in enumerate(zip(firsts, self.stop_at))]
        which = np.concatenate([np.full(b - a, k, dtype=np.int64) for k, a, b in spans])
        at = np.concatenate([np.arange(a, b) for _, a, b in spans])
        times = np.concatenate([self.times[k][a:b] for k, a, b in spans])
        order = np.lexsort((which, times))
        groups = np.split(order, np.flatnonzero(np.diff(times[order])) + 1) if len(order) else []
        for group in bar(groups, show=self.progress, unit="candle", desc="replay"):
            if self.pace and self.stop.wait(self.pace):
                return
            yield Batch(int(times[group[0]]), {self.symbols[which[k]]: list(self.rows[which[k]][at[k]]) for k in group})


def live_policy(policy: dict) -> dict:
    """botter-fetch's validation policy (botter.data.validate) as the live feed applies it: a problem
    set to fail drops the candle too (a live run does not stop for one bad candle, which a restart
    would read again), and a gap is only noted (there is no candle to drop)."""
    return {k: "flag" if k == "gaps" else "drop" if v == "fail" else v for k, v in check_policy(policy).items()}


class Poll:
    """An exchange's public candles of one or more symbols, polled: each candle time is handed on once
    it has closed for every symbol.

    exchange: a ccxt exchange (botter.data.fetch.make_exchange); only its public candle and time
    endpoints are called. policy: botter-fetch's validation policy (`validate` in the configs), as
    `live_policy` applies it: every candle goes through botter.data.validate as botter-fetch puts it
    through, and one it would drop, or no chart can be drawn from, is handed on as skipped (the
    store would not hold it: for the loop it is a missing candle). poll_s: seconds between polls.
    A network error is retried with backoff doubling from `retry_s` up to `max_retry_s` seconds:
    `start_tries` times in all while starting, then for as long as it takes; no new candle of a
    symbol for `stale_after` timeframes logs a warning. With several symbols, a candle time is
    handed on when every symbol's candle of that time is in, or the symbol has a later one (it has
    none of that time), or `missing_after` seconds have passed since the candle closed by the
    exchange's clock (then it is traded without the late symbol's, which is logged, and that candle
    is left out if it comes later). Candles missed while the process was down are caught up: the
    first poll asks for everything since the last recorded candle.
    `wait(seconds) -> bool` sleeps and says whether to stop (default: `stop.wait`); `stop` ends it.
    """

    def __init__(self, exchange: ccxt.Exchange, symbols: list[str], timeframe: str, *, policy: dict,
                 poll_s: float = 10.0, retry_s: float = 1.0, max_retry_s: float = 60.0, start_tries: int = 5,
                 stale_after: float = 2.0, missing_after: float = 30.0, stop: threading.Event | None = None,
                 wait: Callable[[float], bool] | None = None):
        self.exchange, self.symbols, self.timeframe = exchange, list(symbols), timeframe
        self.policy = live_policy(policy)
        self.tf_ms = timeframe_ms(timeframe)
        self.poll_s, self.retry_s, self.max_retry_s = poll_s, retry_s, max_retry_s
        self.start_tries, self.starting = start_tries, True
        self.stale_ms = stale_after * self.tf_ms
        self.missing_ms = missing_after * 1000
        self.stop = stop or threading.Event()
        self.wait = wait or self.stop.wait
        self.limit = page_size(exchange)
        self.last_good: dict[str, pd.DataFrame] = {}  # per symbol, the newest tradeable candle: the checks' context

    def _call(self, fn, *args, **kwargs):
        """`fn(...)`, retried on network errors with bounded backoff: at most `start_tries` calls
        while starting (a wrong url, or a 404 that ccxt reports as a network error, fails fast),
        then for as long as it takes (an outage is waited out and its candles caught up after)."""
        delay = self.retry_s
        for attempt in itertools.count(1):
            try:
                return call(fn, *args, tries=1, **kwargs)  # the backoff is ours; other errors: BotterError
            except BotterError as e:
                cause = e.__cause__
                if not isinstance(cause, RETRY):
                    raise
                if self.starting and attempt >= self.start_tries:
                    raise BotterError(
                        f"could not reach {self.exchange.id} after {attempt} tries ({type(cause).__name__}: "
                        f"{cause}); check the network and exchange.ccxt_config (urls, proxies), or try later"
                    ) from cause
                log.warning("exchange unreachable (%s); retrying in %.0f s", type(cause).__name__, delay)
            if self.wait(delay):
                raise _Stopped
            delay = min(2 * delay, self.max_retry_s)

    def _now(self) -> int:
        """The exchange's clock (epoch ms): it, not ours, says which candle is still open."""
        if self.exchange.has.get("fetchTime"):
            return int(self._call(self.exchange.fetch_time))
        return self.exchange.milliseconds()

    def _closed(self, symbol: str, since: int, now: int) -> list[list]:
        """Every candle of `symbol` with open time >= since that has closed by `now` (ms), page by
        page, as the exchange sent it."""
        out = []
        while since + self.tf_ms <= now:
            page = self._call(self.exchange.fetch_ohlcv, symbol, self.timeframe, since=since, limit=self.limit)
            timeless = [r for r in page if not isinstance(r[0], (int, float)) or r[0] != r[0]]
            if timeless:  # nothing to key it by, not even as skipped
                log.warning("%s: %d candle rows without an open time left out, like %s", symbol, len(timeless),
                            timeless[0])
            rows = [list(r) for r in page if r not in timeless and since <= r[0] and r[0] + self.tf_ms <= now]
            out += rows
            if not rows:
                break
            since = max(int(r[0]) for r in rows) + self.tf_ms
        return out

    def check(self, symbol: str, rows: list[list]) -> tuple[list[list], list[Skip]]:
        """(the tradeable candles of `rows` in time order, the skipped ones with why): botter-fetch's
        gate (botter.data.validate.apply_policy, the newest tradeable candle before them as context),
        then the chart's own rule (botter.render.bad_candles) for what a policy of flag lets through."""
        if not rows:
            return [], []
        kept, report = apply_policy(from_rows(rows), self.timeframe, self.policy, before=self.last_good.get(symbol))
        reasons = {to_ms(t): [f"{name} ({PROBLEMS[name]})" for name in names] for t, names in report.dropped}
        for name, times in report.problems.items():
            if self.policy[name] == "flag":
                for t in times:
                    log.info("%s candle %s kept with %s (%s)", symbol, t, name, PROBLEMS[name])
        unchartable = bad_candles(torch.tensor(kept.to_numpy(np.float64))).numpy()
        for t in kept.index[unchartable]:
            reasons.setdefault(to_ms(t), []).append("no chart can be drawn from it (prices must be finite and "
                                                    "positive, low <= open, close <= high, volume >= 0)")
        kept = kept[~unchartable]
        traded = set(kept.index.as_unit("ms").asi8.tolist())
        skips = {}
        for r in rows:  # one per open time: the first the exchange sent
            t = int(r[0])
            if t not in traded and t not in skips:
                skips[t] = Skip(symbol, t, "; ".join(reasons.get(t, ["dropped"])), r)
        if len(kept):
            self.last_good[symbol] = kept.iloc[-1:]
        return _rows(kept).tolist(), list(skips.values())

    def open(self, since: int | None, warmup: int) -> tuple[dict, Iterator[Batch]]:
        try:
            self._call(self.exchange.load_markets)
            for symbol in self.symbols:
                check_market(self.exchange, symbol, self.timeframe, {"tries": 1})  # markets loaded: no request
            now = self._now()
            if since is None:
                since = (now // self.tf_ms - 1) * self.tf_ms  # start with the newest closed candle
            history = {}
            for symbol in self.symbols:
                # Twice `warmup` timeframes back, so that a gap in the candles still leaves enough.
                rows = self._closed(symbol, since - (2 * warmup + 2) * self.tf_ms, now)
                good, _ = self.check(symbol, [r for r in rows if r[0] < since])
                history[symbol] = good[-warmup:] if warmup else []
        except _Stopped:
            return {}, iter(())
        self.starting = False
        return history, self._poll(since)

    def _poll(self, since: int) -> Iterator[Batch]:
        asked = dict.fromkeys(self.symbols, since)  # per symbol, the next open time to ask for
        pending: dict[int, Batch] = {}
        handed = since - 1  # candles up to this open time are handed on
        last_new = dict.fromkeys(self.symbols)
        warned = set()
        try:
            while True:
                now = self._now()
                for symbol in self.symbols:
                    rows = self._closed(symbol, asked[symbol], now)
                    if rows:
                        asked[symbol] = max(int(r[0]) for r in rows) + self.tf_ms
                        last_new[symbol] = now
                        warned.discard(symbol)
                    elif last_new[symbol] is None:
                        last_new[symbol] = now
                    elif now - last_new[symbol] >= self.stale_ms and symbol not in warned:
                        log.warning("no new %s %s candle on %s for %.0f s (%g timeframes): is the market "
                                    "halted or the exchange lagging?", symbol, self.timeframe,
                                    self.exchange.id, (now - last_new[symbol]) / 1000, self.stale_ms / self.tf_ms)
                        warned.add(symbol)
                    good, skips = self.check(symbol, rows)
                    for t, row, skip in [(int(r[0]), r, None) for r in good] + [(s.time, None, s) for s in skips]:
                        if t <= handed:
                            log.warning("%s candle %s came after that candle time was traded without it: left out",
                                        symbol, pd.Timestamp(t, unit="ms", tz="UTC"))
                            continue
                        batch = pending.setdefault(t, Batch(t))
                        if row is not None:
                            batch.rows[symbol] = row
                        else:
                            batch.skipped.append(skip)
                for t in sorted(pending):
                    batch = pending[t]
                    late = [s for s in self.symbols if s not in batch.rows and all(k.symbol != s for k in batch.skipped)
                            and asked[s] <= t]
                    if late and now < t + self.tf_ms + self.missing_ms:
                        break  # wait for them (the candle times after it wait too)
                    if late:
                        log.warning("%s: no %s candle %.0f s after its close: traded without it", ", ".join(late),
                                    pd.Timestamp(t, unit="ms", tz="UTC"), self.missing_ms / 1000)
                    handed = t
                    yield pending.pop(t)
                if self.wait(self.poll_s):
                    return
        except _Stopped:
            return


class _Stopped(Exception):
    """Raised inside a retry wait when the feed is asked to stop."""
