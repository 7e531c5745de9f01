"""Candle feeds for paper trading: stored candles replayed, or an exchange's public candles polled.

A feed hands the loop closed candles as ccxt rows [open time ms, open, high, low, close, volume],
oldest first. `open(since, warmup)` returns (history, candles): `history` is a list of up to
`warmup` closed candles before the first one to trade (for the chart window), `candles` an
iterator of the candles to trade, starting at open time `since` (or where the feed starts when
`since` is None). Nothing here can place an order: feeds only read candles.
"""

import itertools
import logging
import threading
from collections.abc import Callable, Iterator

import ccxt
import numpy as np
import pandas as pd
from tqdm import tqdm

from botter.data.candles import timeframe_ms, to_ms
from botter.data.fetch import RETRY, call, check_market, page_size
from botter.errors import BotterError

log = logging.getLogger(__name__)


def _rows(df: pd.DataFrame) -> np.ndarray:
    """A Candles frame as ccxt rows, (N, 6) float64 with the open time in ms in column 0."""
    t = df.index.as_unit("ms").asi8.astype(np.float64)
    return np.column_stack([t, df[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)])


class Replay:
    """Stored candles played one closed candle at a time, as fast as possible or `pace` s apart.

    candles: a Candles frame; start/end: the open times of the first and last candle to trade
    (inclusive; None: from the first candle with `warmup` candles before it / to the last);
    stop: set it to end the replay (and any pacing wait) early.
    """

    log_level = logging.DEBUG  # its fills are not logged one by one: the progress bar shows it moving

    def __init__(self, candles: pd.DataFrame, *, start=None, end=None, pace: float = 0.0,
                 stop: threading.Event | None = None, progress: bool = True):
        self.rows = _rows(candles)
        self.times = self.rows[:, 0].astype(np.int64)
        self.start = None if start is None else to_ms(start)
        self.stop_at = len(self.times) if end is None else int(np.searchsorted(self.times, to_ms(end), "right"))
        self.pace = pace
        self.stop = stop or threading.Event()
        self.progress = progress

    def open(self, since: int | None, warmup: int) -> tuple[list, Iterator[list]]:
        if since is None and self.start is None:
            first = min(warmup, len(self.times))
        else:
            first = int(np.searchsorted(self.times, max(since or 0, self.start or 0)))
        history = [list(r) for r in self.rows[max(0, first - warmup) : first]]
        return history, self._play(first)

    def _play(self, first: int) -> Iterator[list]:
        for i in tqdm(range(first, self.stop_at), unit="candle", desc="replay", disable=not self.progress):
            if self.pace and self.stop.wait(self.pace):
                return
            yield list(self.rows[i])


class Poll:
    """An exchange's public candles, polled: each candle is handed on once it has closed.

    exchange: a ccxt exchange (botter.data.fetch.make_exchange); only its public candle and time
    endpoints are called. poll_s: seconds between polls. A network error is retried with backoff
    doubling from `retry_s` up to `max_retry_s` seconds: `start_tries` times in all while starting,
    then for as long as it takes; no new candle for
    `stale_after` timeframes logs a warning. Candles missed while the process was down are caught
    up: the first poll asks for everything since the last traded candle.
    `wait(seconds) -> bool` sleeps and says whether to stop (default: `stop.wait`); `stop` ends it.
    """

    def __init__(self, exchange: ccxt.Exchange, symbol: str, timeframe: str, *, poll_s: float = 10.0,
                 retry_s: float = 1.0, max_retry_s: float = 60.0, start_tries: int = 5, stale_after: float = 2.0,
                 stop: threading.Event | None = None, wait: Callable[[float], bool] | None = None):
        self.exchange, self.symbol, self.timeframe = exchange, symbol, timeframe
        self.tf_ms = timeframe_ms(timeframe)
        self.poll_s, self.retry_s, self.max_retry_s = poll_s, retry_s, max_retry_s
        self.start_tries, self.starting = start_tries, True
        self.stale_ms = stale_after * self.tf_ms
        self.stop = stop or threading.Event()
        self.wait = wait or self.stop.wait
        self.limit = page_size(exchange)

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

    def _closed(self, since: int, now: int) -> list[list]:
        """Every candle with open time >= since that has closed by `now` (ms), page by page."""
        out = []
        while since + self.tf_ms <= now:
            page = self._call(self.exchange.fetch_ohlcv, self.symbol, self.timeframe, since=since, limit=self.limit)
            rows = [[float(x) for x in r] for r in page if since <= r[0] and r[0] + self.tf_ms <= now]
            out += rows
            if not rows:
                break
            since = int(rows[-1][0]) + self.tf_ms
        return out

    def open(self, since: int | None, warmup: int) -> tuple[list, Iterator[list]]:
        try:
            self._call(self.exchange.load_markets)
            check_market(self.exchange, self.symbol, self.timeframe, {"tries": 1})  # markets loaded: no request
            now = self._now()
            if since is None:
                since = (now // self.tf_ms - 1) * self.tf_ms  # start with the newest closed candle
            # Twice `warmup` timeframes back, so that a gap in the candles still leaves enough.
            history = self._closed(since - (2 * warmup + 2) * self.tf_ms, now)
        except _Stopped:
            return [], iter(())
        history = [r for r in history if r[0] < since][-warmup:] if warmup else []
        self.starting = False
        return history, self._poll(since)

    def _poll(self, since: int) -> Iterator[list]:
        last_new = None
        warned = False
        try:
            while True:
                now = self._now()
                rows = self._closed(since, now)
                yield from rows
                if rows:
                    since = int(rows[-1][0]) + self.tf_ms
                    last_new, warned = now, False
                elif last_new is None:
                    last_new = now
                elif now - last_new >= self.stale_ms and not warned:
                    log.warning("no new %s %s candle on %s for %.0f s (%g timeframes): is the market "
                                "halted or the exchange lagging?", self.symbol, self.timeframe,
                                self.exchange.id, (now - last_new) / 1000, self.stale_ms / self.tf_ms)
                    warned = True
                if self.wait(self.poll_s):
                    return
        except _Stopped:
            return


class _Stopped(Exception):
    """Raised inside a retry wait when the feed is asked to stop."""
