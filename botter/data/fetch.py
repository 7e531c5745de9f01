"""Fetch candles from any ccxt exchange into the local store, page by page.

A fetch is complete or it fails. It asks for what the store lacks in [since, until): before its
first candle (a backfill), its holes, after its last; only the candles the store lacks are stored
(or, with refetch, compared). Pages follow `since` in the exchange's own page size; a page that
cannot be read, or that is empty while the exchange's clock says closed candles exist, is retried
like a network error and, if it persists, ends the fetch with a BotterError saying how far it got.
So does an exchange that ignores the start time asked for (it sends its newest candles instead),
an exchange clock that is no time near now, and a range that cannot hold a closed candle. Each
page is validated as it arrives; the pages are written to the store every few seconds and at the
end (also after an error or Ctrl-C), each write merging under the store's lock, so concurrent
fetches all land and a run killed mid-way leaves the old file or the old file with whole pages
added (running it again fills the rest). The candle that is still open (its close is after the
exchange's clock) is never stored.

Candles need no API key, and the exchanges built here for them have none: no request is signed.
Where a key is needed (`make_exchange(..., keys=True)`) it comes only from the environment:
BOTTER_<EXCHANGE>_API_KEY, BOTTER_<EXCHANGE>_SECRET and BOTTER_<EXCHANGE>_PASSWORD (the passphrase
some exchanges ask for), e.g. BOTTER_BINANCE_API_KEY. They are never logged or written.
"""

import email.utils
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import ccxt
import numpy as np
import pandas as pd

from botter.data.candles import from_rows, next_open, on_grid, slot, slot_open, to_ms
from botter.data.store import LOCAL, append_store, read_store
from botter.data.validate import Report, apply_policy, check_policy, combine, learn_hours, refuse_all_dropped
from botter.errors import BotterError
from botter.progress import bar as progress_bar


class BadPage(Exception):
    """A candle page that cannot be read, or that stops short of what the exchange's clock says exists."""


class Unavailable(BotterError):
    """The exchange stayed unreachable, busy or broken through every try: the same command may work later."""


# Worth another try: the exchange is busy, slow or briefly down, or sent a bad page. All but BadPage
# are ccxt.NetworkError subclasses, but so is a 404 that binance maps to ExchangeNotAvailable: hence
# the bound on tries.
RETRY = (
    ccxt.RequestTimeout,
    ccxt.RateLimitExceeded,
    ccxt.DDoSProtection,
    ccxt.ExchangeNotAvailable,
    ccxt.NetworkError,
    BadPage,
)
# Where ccxt does not say how many candles a page holds.
DEFAULT_PAGE = 500
# Seconds between store writes during a fetch; a run killed hard loses at most this much fetching.
WRITE_EVERY_S = 10.0
KEY_FIELDS = {"apiKey": "API_KEY", "secret": "SECRET", "password": "PASSWORD"}
# HTTP statuses of a request the exchange refuses for good (ccxt raises most 4xx as network errors);
# 408 (timeout), 418 and 429 (too many requests) pass.
TRANSIENT_4XX = (408, 418, 429)
# The exchange's clock must read a time from here to a day after this machine's clock.
EARLIEST_CLOCK_MS = 1_230_768_000_000  # 2009-01-01
DAY_MS = 86_400_000


def make_exchange(exchange_id: str, ccxt_config: dict | None = None, *, sandbox: bool = False,
                  keys: bool = False) -> ccxt.Exchange:
    """A ccxt exchange built from `ccxt_config` (options, urls, timeout, proxies ...), as ccxt users
    write it. Sandbox mode is switched on before the urls are applied, since switching it would
    overwrite them. keys: read the API keys from BOTTER_<EXCHANGE>_API_KEY / _SECRET / _PASSWORD
    (False, for public data such as candles: the exchange then cannot sign a request, and ccxt
    makes no private call while loading markets). Keys in `ccxt_config` are refused."""
    if exchange_id not in ccxt.exchanges:
        local = " (local-<name> ids are for CSV imports only)" if LOCAL.fullmatch(str(exchange_id)) else ""
        raise BotterError(
            f"exchange.id={exchange_id!r} is not a ccxt exchange id{local}; ids are like binance, kraken, okx"
        )
    config = dict(ccxt_config or {})
    for key, suffix in KEY_FIELDS.items():
        env = f"BOTTER_{exchange_id.upper()}_{suffix}"
        if key in config:
            raise BotterError(
                f"exchange.ccxt_config.{key} is set: keys are read only from the environment ({env}); "
                "remove it from the config"
            )
        if keys and os.environ.get(env):
            config[key] = os.environ[env]
    urls = config.pop("urls", None)
    exchange = getattr(ccxt, exchange_id)(config)
    if sandbox:
        try:
            exchange.set_sandbox_mode(True)
        except ccxt.NotSupported as e:
            raise BotterError(f"{exchange_id} has no sandbox: set exchange.sandbox=false") from e
    if urls:
        exchange.urls = exchange.deep_extend(exchange.urls, urls)
    return exchange


def _status(e: Exception) -> int | None:
    """The HTTP status in a ccxt error's message ("binance GET https://... 404 Not Found"), or None."""
    m = re.search(r"https?://\S+ (\d{3})\b", str(e))
    return int(m[1]) if m else None


def _refused(e: Exception) -> bool:
    """Whether the exchange refused the request for good (a 4xx other than a timeout or a rate limit)."""
    status = _status(e)
    return status is not None and 400 <= status < 500 and status not in TRANSIENT_4XX


def _hint(e: Exception, exchange: ccxt.Exchange | None) -> str:
    if isinstance(e, ccxt.BadSymbol):
        return "unknown symbol: check the symbol (BASE/QUOTE, like BTC/USDT)"
    if isinstance(e, (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended)):
        if exchange is not None and exchange.apiKey:
            return "the exchange refused the API key: check BOTTER_<EXCHANGE>_API_KEY/_SECRET or unset them"
        return ("the exchange answered that the request needs an API key, though candles need none and none was "
                "sent: check exchange.id and the urls in exchange.ccxt_config")
    if isinstance(e, ccxt.BadRequest):
        return "the exchange rejected the request: check symbol and timeframe"
    if _refused(e):
        return (f"the exchange refused the request (HTTP {_status(e)}): check exchange.id, symbol, timeframe and the "
                "urls in exchange.ccxt_config (HTTP 403 or 451 can mean it does not serve this region)")
    return "the exchange answered with an error"


def _retry_hint(e: Exception, tries: int) -> str:
    if isinstance(e, BadPage):
        return f"the exchange sent a bad candle page {tries} times"
    if isinstance(e, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
        return (f"the exchange refused {tries} requests in a row as too many: wait a few minutes, and keep "
                "exchange.ccxt_config.enableRateLimit on")
    return (f"could not reach the exchange after {tries} tries: check the network, exchange.ccxt_config "
            "urls/proxies, or try later")


def retry_after(exchange: ccxt.Exchange | None) -> float | None:
    """Seconds the exchange's last answer asked to wait (its Retry-After header), or None.

    ccxt keeps the headers of the last response on the exchange, also when it raised for a 418 or
    429 (DDoSProtection / RateLimitExceeded); the header holds seconds or an HTTP date."""
    headers = getattr(exchange, "last_response_headers", None) or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))  # may be inf: `call` says so
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def check_retry(tries, base_delay, max_delay) -> None:
    """Raise BotterError, naming the retry.* setting, where the retry settings make no sense."""
    if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
        raise BotterError(f"retry.tries={tries!r}: give the number of calls to make, 1 or more")
    for name, value in (("base_delay", base_delay), ("max_delay", max_delay)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise BotterError(f"retry.{name}={value!r}: give the seconds to wait, 0 or more")


def call(fn, *args, tries: int = 5, base_delay: float = 1.0, max_delay: float = 30.0, **kwargs):
    """`fn(*args, **kwargs)`, retried on network trouble and bad pages with exponential backoff
    (base_delay s, doubling, at most max_delay s) up to `tries` calls in all; other ccxt errors,
    and a request the exchange refuses for good (a 4xx answer), become BotterError at once. The
    exchange is `fn`'s owner or its first argument: where it answered "too many requests" with a
    Retry-After, that wait is kept (and more than max_delay fails at once, saying when to try
    again), and its keys are blanked out of the message. Giving up on a retried error raises
    `Unavailable` (a BotterError: the same call may work later)."""
    check_retry(tries, base_delay, max_delay)
    exchange = getattr(fn, "__self__", None) or next(iter(args), None)
    exchange = exchange if isinstance(exchange, ccxt.Exchange) else None
    error_type = BotterError
    for attempt in range(tries):
        try:
            return fn(*args, **kwargs)
        except RETRY as e:
            if _refused(e):
                error, hint = e, _hint(e, exchange)
                break
            error, wait, error_type = e, min(max_delay, base_delay * 2**attempt), Unavailable
            asked = retry_after(exchange) if isinstance(e, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)) else None
            if asked is not None and asked > max_delay:
                # An absurd wait (inf, 1e20 s) has no date to say.
                when = (f"after {pd.Timestamp.now('UTC') + pd.Timedelta(seconds=asked):%Y-%m-%d %H:%M} UTC"
                        if asked < 1e8 else "much later")
                hint = f"the exchange asks to wait {asked:g} s before the next request (too many requests): try again {when}"
                break
            if attempt < tries - 1:
                time.sleep(wait if asked is None else asked)
                continue
            hint = _retry_hint(e, tries)
        except ccxt.BaseError as e:
            error, hint = e, _hint(e, exchange)
            break
    message = f"{hint} ({type(error).__name__}: {error})"
    for key in KEY_FIELDS:
        secret = getattr(exchange, key, None)
        if secret:
            message = message.replace(secret, "***")
    raise error_type(message) from error


def page_size(exchange: ccxt.Exchange) -> int:
    """Candles per fetch_ohlcv page, as ccxt records it for the exchange's spot markets."""
    features = exchange.features or {}
    spot = features.get("spot") or {}
    return int((spot.get("fetchOHLCV") or {}).get("limit") or DEFAULT_PAGE)


def check_market(exchange: ccxt.Exchange, symbol: str, timeframe: str, retry: dict) -> None:
    """Fail at once, with the fix, for a market or timeframe the exchange does not have."""
    if not exchange.has.get("fetchOHLCV"):
        raise BotterError(f"{exchange.id} does not serve candles (no fetchOHLCV in ccxt)")
    call(exchange.load_markets, **retry)
    if symbol not in exchange.markets:
        raise BotterError(f"unknown symbol {symbol!r} on {exchange.id}: use a unified symbol like BTC/USDT")
    if exchange.timeframes and timeframe not in exchange.timeframes:
        raise BotterError(
            f"{exchange.id} has no timeframe {timeframe!r}; it has: {', '.join(exchange.timeframes)}"
        )


def _ts(ms: int) -> str:
    try:
        return f"{pd.Timestamp(ms, unit='ms', tz='UTC'):%Y-%m-%d %H:%M}"
    except (ValueError, OverflowError, NotImplementedError):  # past pandas' range, or past year 9999 for strftime
        return f"{ms} ms since 1970"


def fetch_page(exchange: ccxt.Exchange, symbol: str, timeframe: str, since: int, limit: int, now: int) -> pd.DataFrame:
    """One page of candles from open time `since` on, as the exchange sent them (a frame from
    `from_rows`, not yet validated). Raises BadPage where the answer cannot be read, or where it
    holds no candle from `since` on although one has closed by the exchange's clock `now` (ms)."""
    try:
        page = from_rows(exchange.fetch_ohlcv(symbol, timeframe, since=since, limit=limit))
    except (BotterError, TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        # ccxt hands on what it could not parse (a truncated answer arrives as text).
        raise BadPage(f"an unreadable page of candles from {_ts(since)} ({type(e).__name__}: {e})") from e
    if not (page.index.as_unit("ms").asi8 >= since).any() and next_open(since, timeframe) <= now:
        # ccxt hands on an answer that is not JSON as text, and parses that into no candles.
        text = exchange.last_http_response
        try:
            json.loads(text)
        except (TypeError, ValueError) as e:
            raise BadPage(f"an unreadable page of candles from {_ts(since)}: {str(text)[:40]!r}...") from e
        raise BadPage(
            f"no candles from {_ts(since)} on, although the exchange's clock ({_ts(now)}) says they have closed "
            "(if the market stopped trading, give until= its last day)"
        )
    return page


@dataclass
class Fetched:
    """What `fetch_to_store` did: the stored frame after its last write, candles added at new open
    times, stored candles replaced or kept where the fetched ones differ (see `append_store`), the
    report of the candles received (and what was done about each problem), and notes on the range."""

    stored: pd.DataFrame
    report: Report
    added: int = 0
    replaced: int = 0
    kept: int = 0
    notes: list[str] = field(default_factory=list)


def missing_ranges(stored: pd.DatetimeIndex, since: int, end: int, timeframe: str, page: int) -> list[tuple[int, int]]:
    """The [start, stop) spans of [since, end) (epoch ms) that hold no stored candle: before the
    first, after the last and the holes between, as open times on the timeframe's grid. Spans less
    than a page apart are merged into one range, so that a store with many small gaps costs no more
    requests than fetching it whole (the stored candles inside a range are not stored again)."""
    first = int(slot(since, timeframe)) + int(not on_grid(since, timeframe))  # the first slot opening at or after since
    stop = int(slot(end - 1, timeframe)) + 1  # slots opening before end
    ms = stored.as_unit("ms").asi8
    inside = slot(ms[(ms >= since) & (ms < end)], timeframe)
    starts = np.concatenate([[first], inside + 1])
    stops = np.concatenate([inside, [stop]])
    ranges = []
    for a, b in zip(starts[starts < stops].tolist(), stops[starts < stops].tolist()):
        if ranges and a - ranges[-1][1] <= page:
            ranges[-1] = (ranges[-1][0], b)
        else:
            ranges.append((a, b))
    return [(int(slot_open(a, timeframe)), int(slot_open(b, timeframe))) for a, b in ranges]


def exchange_clock(exchange: ccxt.Exchange, retry: dict) -> int:
    """The exchange's clock (epoch ms): it, not ours, says which candle is still open. A clock that
    reads no time from 2009 to a day after this machine's clock raises BotterError."""
    now = call(exchange.fetch_time, **retry) if exchange.has.get("fetchTime") else exchange.milliseconds()
    machine = int(time.time() * 1000)
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not EARLIEST_CLOCK_MS <= now <= machine + DAY_MS:
        raise BotterError(
            f"{exchange.id}'s clock reads {now!r} (as epoch ms: {_ts(now) if isinstance(now, (int, float)) else '?'}), "
            f"no time between 2009 and this machine's {_ts(machine)} UTC, so botter cannot tell which candles have "
            "closed: check exchange.id and the urls in exchange.ccxt_config (an answer in seconds or microseconds?)"
        )
    return int(now)


def _ignored_start(exchange: ccxt.Exchange, asked: int, got: int) -> BotterError:
    return BotterError(
        f"{exchange.id} ignores the start time asked for: asked for candles from {_ts(asked)}, it sent ones from "
        f"{_ts(got)} (its newest), so it cannot be fetched page by page and the range would not be complete; "
        "nothing of that answer is stored"
    )


def _range_checks(since: int | None, until: int | None, first: int, now: int, stored: pd.DataFrame, timeframe: str) -> None:
    """Raise BotterError for a range in which no closed candle can be: since before 1970 or after
    the exchange's clock, until not after since, or a store whose last candle is in the future."""
    if since is not None and first < 0:
        raise BotterError(f"since={_ts(first)} is before 1970: give a date from when the market traded, like 2020-01-01")
    if until is not None and until <= first:
        raise BotterError(f"until={_ts(until)} is not after since={_ts(first)}: give until later than since")
    if len(stored) and next_open(to_ms(stored.index[-1]), timeframe) > now:
        raise BotterError(
            f"the store's last candle opens at {_ts(to_ms(stored.index[-1]))}, and has not closed by the exchange's "
            f"clock ({_ts(now)}): it holds a candle with a date in the future (an import with a typo?); move the file "
            "away and import or fetch its candles again"
        )
    if since is not None and next_open(first, timeframe) > now:
        raise BotterError(f"since={_ts(first)}: no candle from then on has closed by the exchange's clock "
                          f"({_ts(now)}): give an earlier since")


def fetch_to_store(
    exchange: ccxt.Exchange,
    symbol: str,
    timeframe: str,
    path: Path,
    *,
    since=None,
    until=None,
    policy: dict,
    retry: dict,
    conflicts: str = "fail",
    refetch: bool = False,
    progress: bool = True,
) -> Fetched:
    """Fetch the candles with open time in [since, until) that the store lacks (before its first
    candle, in its holes, after its last; or, with `refetch`, all of them again), page by page, into
    the Parquet store at `path`. Without `since` it continues after the last stored candle.

    since/until: text like "2024-01-01", a datetime or epoch ms; since may be None when the store
    has candles already. `policy` is the per-problem validation policy (configs/validate), `retry`
    the keyword arguments of `call` (tries, base_delay, max_delay), `conflicts` what to do where a
    fetched candle differs from a stored one ("fail", "keep", "replace"; see `append_store`). Missing
    candles where the market is closed by the hours learnt from the store (botter.data.hours) are
    reported as closures, not gaps.
    Raises BotterError, saying how far it got, where the exchange fails or keeps sending bad pages,
    where every candle received was dropped, or on Ctrl-C; what was fetched before stays stored, and
    running it again fills the rest.
    """
    policy = check_policy(policy)
    check_market(exchange, symbol, timeframe, retry)
    stored = read_store(path)
    if since is None and len(stored) == 0:
        raise BotterError(f"nothing stored yet for {symbol} {timeframe}: give since=YYYY-MM-DD")
    now = exchange_clock(exchange, retry)
    first = to_ms(since) if since is not None else to_ms(stored.index[0]) if refetch else int(
        next_open(to_ms(stored.index[-1]), timeframe))
    until = to_ms(until) if until is not None else None
    _range_checks(since, until, first, now, stored, timeframe)
    end = min(until, now) if until is not None else now
    limit = page_size(exchange)
    known = stored.index[:0] if refetch else stored.index
    ranges = missing_ranges(known, first, end, timeframe, limit) if first < end else []
    hours = learn_hours(stored.index, timeframe)
    out = Fetched(stored, combine([], timeframe))
    if not ranges and len(stored):
        out.notes.append(f"the store holds {_ts(to_ms(stored.index[0]))} to {_ts(to_ms(stored.index[-1]))} and no "
                         "candle is missing in the range asked: nothing to fetch (refetch=true fetches it again)")
    reports = []
    pending = []  # whole pages fetched and checked, not yet written
    # The first page is written at once: a store that cannot be written fails the fetch after one
    # page, not after an hour of fetching.
    last_write = -math.inf

    def write():
        nonlocal pending, last_write
        if pending:
            written = append_store(path, pd.concat(pending).sort_index(kind="stable"), conflicts=conflicts)
            out.stored = written.stored
            out.added += written.added
            out.replaced += written.replaced
            out.kept += written.kept
            pending, last_write = [], time.monotonic()

    known_ms = known.as_unit("ms").asi8
    total = sum(int(slot(b - 1, timeframe) - slot(a, timeframe)) + 1 - int(((known_ms >= a) & (known_ms < b)).sum())
                for a, b in ranges)
    bar = progress_bar(total=total, unit="candle", desc=f"{exchange.id} {symbol} {timeframe}", show=progress)
    start = None
    probed = False  # whether the exchange was seen to honour the start time
    try:
        for a, b in ranges:
            # The stored candle before the range: a repeat of it or a gap after it is seen too.
            before = known[known < pd.Timestamp(a, unit="ms", tz="UTC")]
            before = stored.loc[before[-1:]] if len(before) else None
            start = a
            while start < b:
                page = call(fetch_page, exchange, symbol, timeframe, start, limit, now, **retry)
                t = page.index.as_unit("ms").asi8
                if len(t) and (t < start).all():
                    raise _ignored_start(exchange, start, int(t.min()))
                # Closed candles in range only: the close must not be after now.
                wanted = (t >= a) & (t < b) & (next_open(t, timeframe) <= now)
                if not wanted.any():
                    break  # what the exchange has from `start` on is past the range or still open
                got = int(t[wanted].min())
                if not probed and got > start and slot(t.max(), timeframe) >= slot(now, timeframe) - 1:
                    # The first candle sent is later than asked and the page reaches now: a market
                    # listed later, or an exchange that sends its newest candles whatever is asked
                    # (ccxt drops those before `since`, so the page alone cannot tell). Asked for one
                    # candle from the same start, the first sends `got`, the second its newest.
                    check = call(fetch_page, exchange, symbol, timeframe, start, 1, now, **retry)
                    if check.index.as_unit("ms").asi8[:1].tolist() != [got]:
                        raise _ignored_start(exchange, start, got)
                    probed = True
                kept, report = apply_policy(page[wanted], timeframe, policy, before=before, hours=hours)
                reports.append(report)
                new = kept if refetch else kept[~kept.index.isin(known)]  # stored ones are not fetched again
                bar.update(len(new))
                if len(new):
                    pending.append(new)
                if len(kept):
                    before = kept
                start = int(next_open(t[wanted].max(), timeframe))
                # Rewriting the file costs more as it grows: write a few times a minute, not per page.
                if time.monotonic() - last_write > WRITE_EVERY_S:
                    write()
        write()
    except BaseException as e:
        try:
            write()
            unstored = None
        except (BotterError, KeyboardInterrupt) as w:
            unstored = w
        if not isinstance(e, (BotterError, KeyboardInterrupt)) or start is None:
            raise
        what = "interrupted (Ctrl-C)" if isinstance(e, KeyboardInterrupt) else str(e)
        if isinstance(unstored, BotterError) and str(unstored) != what:
            what += f"; storing the candles fetched before it failed too: {unstored}"
        again = "; run the same command again to fetch the rest" if isinstance(e, (Unavailable, KeyboardInterrupt)) else ""
        error_type = Unavailable if isinstance(e, Unavailable) else BotterError  # the same command may work later
        raise error_type(f"{what} [the fetch stopped at {_ts(start)}: {out.added} candles added before it are "
                         f"stored{again}]") from e
    finally:
        bar.close()
    out.report = combine(reports, timeframe)
    refuse_all_dropped(out.report)
    if len(stored) and since is not None and first < to_ms(stored.index[0]) and not (
            out.report.rows and out.report.first < stored.index[0]):
        out.notes.append(f"backfill: the exchange sent no {symbol} {timeframe} candles from {_ts(first)} to "
                         f"{_ts(to_ms(stored.index[0]))}, where the store begins")
    return out
