"""Fetch candles from any ccxt exchange into the local store, page by page.

Pages follow `since` in the exchange's own page size; each page is validated, and the pages are
written to the store atomically every few seconds and at the end (also after an error or Ctrl-C),
so a run killed mid-way leaves the old file or the old file with whole pages added. The
candle that is still open (its close is after the exchange's clock) is never stored.

API keys are not needed for candles. Where given they come only from the environment:
BOTTER_<EXCHANGE>_API_KEY, BOTTER_<EXCHANGE>_SECRET and BOTTER_<EXCHANGE>_PASSWORD (the passphrase
some exchanges ask for), e.g. BOTTER_BINANCE_API_KEY. They are never logged or written.
"""

import os
import time
from pathlib import Path

import ccxt
import pandas as pd
from tqdm import tqdm

from botter.data.candles import from_rows, timeframe_ms, to_ms
from botter.data.store import append_store, read_store
from botter.data.validate import apply_policy, check_policy
from botter.errors import BotterError

# Worth another try: the exchange is busy, slow or briefly down. All are ccxt.NetworkError
# subclasses, but so is a 404 that binance maps to ExchangeNotAvailable: hence the bound on tries.
RETRY = (
    ccxt.RequestTimeout,
    ccxt.RateLimitExceeded,
    ccxt.DDoSProtection,
    ccxt.ExchangeNotAvailable,
    ccxt.NetworkError,
)
# Where ccxt does not say how many candles a page holds.
DEFAULT_PAGE = 500
# Seconds between store writes during a fetch; a run killed hard loses at most this much fetching.
WRITE_EVERY_S = 10.0
KEY_FIELDS = {"apiKey": "API_KEY", "secret": "SECRET", "password": "PASSWORD"}


def make_exchange(exchange_id: str, ccxt_config: dict | None = None, *, sandbox: bool = False) -> ccxt.Exchange:
    """A ccxt exchange built from `ccxt_config` (options, urls, timeout, proxies ...), as ccxt users
    write it. Sandbox mode is switched on before the urls are applied, since switching it would
    overwrite them. Keys are read from BOTTER_<EXCHANGE>_API_KEY / _SECRET / _PASSWORD only."""
    if exchange_id not in ccxt.exchanges:
        raise BotterError(f"exchange.id={exchange_id!r} is not a ccxt exchange id; ids are like binance, kraken, okx")
    config = dict(ccxt_config or {})
    for key, suffix in KEY_FIELDS.items():
        env = f"BOTTER_{exchange_id.upper()}_{suffix}"
        if key in config:
            raise BotterError(
                f"exchange.ccxt_config.{key} is set: keys are read only from the environment ({env}); "
                "remove it from the config"
            )
        if os.environ.get(env):
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


def _hint(e: ccxt.BaseError) -> str:
    if isinstance(e, ccxt.BadSymbol):
        return "unknown symbol: check the symbol (BASE/QUOTE, like BTC/USDT)"
    if isinstance(e, (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended)):
        return "the exchange refused the API key: check BOTTER_<EXCHANGE>_API_KEY/_SECRET or unset them (candles need no key)"
    if isinstance(e, ccxt.BadRequest):
        return "the exchange rejected the request: check symbol and timeframe"
    return "the exchange answered with an error"


def call(fn, *args, tries: int = 5, base_delay: float = 1.0, max_delay: float = 30.0, **kwargs):
    """`fn(*args, **kwargs)`, retried on network trouble with exponential backoff (base_delay s,
    doubling, at most max_delay s) up to `tries` calls in all; other ccxt errors become BotterError
    at once. Where `fn` is a method of an exchange, its keys are blanked out of the message."""
    for attempt in range(tries):
        try:
            return fn(*args, **kwargs)
        except RETRY as e:
            if attempt < tries - 1:
                time.sleep(min(max_delay, base_delay * 2**attempt))
                continue
            error = e
            hint = f"could not reach the exchange after {tries} tries: check the network, exchange.ccxt_config urls/proxies, or try later"
        except ccxt.BaseError as e:
            error, hint = e, _hint(e)
        message = f"{hint} ({type(error).__name__}: {error})"
        exchange = getattr(fn, "__self__", None)
        for key in KEY_FIELDS:
            secret = getattr(exchange, key, None)
            if secret:
                message = message.replace(secret, "***")
        raise BotterError(message) from error


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
    progress: bool = True,
) -> tuple[pd.DataFrame, int, int]:
    """Fetch candles with open time in [since, until) that come after the last stored one, page by
    page, into the Parquet store at `path`.

    since/until: text like "2024-01-01", a datetime or epoch ms; since may be None when the store
    has candles already. `policy` is the per-problem validation policy, `retry` the keyword
    arguments of `call` (tries, base_delay, max_delay).
    Returns (whole stored frame, candles added, fetched candles dropped by the policy).
    """
    policy = check_policy(policy)
    tf_ms = timeframe_ms(timeframe)
    check_market(exchange, symbol, timeframe, retry)
    stored = read_store(path)
    if since is None and len(stored) == 0:
        raise BotterError(f"nothing stored yet for {symbol} {timeframe}: give since=YYYY-MM-DD")
    start = to_ms(since) if since is not None else 0
    if len(stored):
        start = max(start, int(stored.index[-1].value // 1_000_000) + tf_ms)
    # The exchange's clock, not ours, says which candle is still open.
    now = call(exchange.fetch_time, **retry) if exchange.has.get("fetchTime") else exchange.milliseconds()
    end = min(to_ms(until), now) if until is not None else now
    limit = page_size(exchange)
    added = dropped = 0
    pending = []  # whole pages fetched and checked, not yet written
    last_write = time.monotonic()
    prev = stored.tail(1)  # the newest candle known: a gap at a page boundary is seen too

    def write():
        nonlocal stored, pending, last_write
        if pending:
            stored = append_store(path, pd.concat(pending), stored=stored)
            pending, last_write = [], time.monotonic()

    total = max(0, (end - start) // tf_ms)
    bar = tqdm(total=total, unit="candle", desc=f"{exchange.id} {symbol} {timeframe}", disable=not progress)
    try:
        while start < end:
            rows = call(exchange.fetch_ohlcv, symbol, timeframe, since=start, limit=limit, **retry)
            # Closed candles in range only: the close (open + timeframe) must not be after now.
            keep = [r for r in rows if start <= r[0] < end and r[0] + tf_ms <= now]
            if keep:
                checked, _ = apply_policy(pd.concat([prev, from_rows(keep)]), timeframe, policy)
                page = checked[~checked.index.isin(prev.index)]
                dropped += len(keep) - len(page)
                added += len(page)
                bar.update(len(page))
                if len(page):
                    pending.append(page)
                    prev = page.tail(1)
                # Rewriting the file costs more as it grows: write a few times a minute, not per page.
                if time.monotonic() - last_write > WRITE_EVERY_S:
                    write()
            if not rows or max(r[0] for r in rows) < start:
                break  # nothing more to come
            start = max(r[0] for r in rows) + tf_ms
    finally:
        bar.close()
        write()  # what was fetched before an error or Ctrl-C is kept, in whole pages
    return stored, added, dropped
