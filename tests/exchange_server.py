"""A fake Binance spot REST server on 127.0.0.1 for tests: markets and klines from DataFrames.

Point a real `ccxt.binance` at it with `server.ccxt_config()`. It pages klines by startTime /
endTime / limit like Binance (default 500, capped at 1000 or a smaller `page_limit`), serves only
candles opened before its clock `now` (so the last one served is the still-open candle), can fail
the next N requests (timeout, 418/429 with an optional Retry-After, 5xx) or spoil the next klines
pages (truncated, empty, a candle repeated with other values, one off the grid), can serve given raw
values for some candles (`serve_raw`: a None volume, a "NaN", high < low, as some exchanges send) and
hold a market's candles back from an open time on (`stall`), and logs every request path so a test
can assert what was (not) called. Every binance API url points here,
private ones too: a signed request shows in the log (and gets a 404).

    with ExchangeServer({"ETH/BTC": load_sample("ETH/BTC")}, "5m") as server:
        exchange = ccxt.binance(server.ccxt_config())
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import ccxt
import pandas as pd

BINANCE_API = ccxt.binance().urls["api"]  # every REST url of binance: public, private, sapi, futures


class ExchangeServer:
    """Serve `candles` ({"BASE/QUOTE": Candles frame}) at one `timeframe` like Binance's /api/v3."""

    def __init__(self, candles: dict[str, pd.DataFrame], timeframe: str, *, page_limit: int = 1000):
        self.timeframe = timeframe
        self.page_limit = page_limit  # the most candles a klines page holds (Binance: 1000)
        self.tf_ms = ccxt.Exchange.parse_timeframe(timeframe) * 1000
        self.rows = {}  # Binance market id -> list of kline rows
        self.markets = {}  # Binance market id -> (base, quote)
        for symbol, df in candles.items():
            base, quote = symbol.split("/")
            opens = df.index.as_unit("ms").asi8
            self.markets[base + quote] = (base, quote)
            self.rows[base + quote] = [
                [int(t), *(repr(float(x)) for x in v[:4]), repr(float(v[4])), int(t) + self.tf_ms - 1]
                for t, v in zip(opens, df[["open", "high", "low", "close", "volume"]].to_numpy())
            ]
        self.stalled: dict[str, int] = {}  # Binance market id -> first open time not served
        last = max((rows[-1][0] for rows in self.rows.values() if rows), default=0)
        # Epoch ms of the server clock; by default every candle has closed.
        self.now = last + self.tf_ms
        self.requests: list[str] = []  # every request path with its query, in order
        self.retry_after: float | None = None  # seconds sent as Retry-After with a 418 or 429
        # The client's timeout in ccxt_config (s): far above a local answer on a busy machine, so that
        # only an injected timeout times out. An injected timeout hangs four times as long (or until
        # the server stops).
        self.timeout_s = 2.0
        self._stopping = threading.Event()
        self._faults: list[object] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        # A short poll so that stop() returns quickly.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/api/v3"

    def ccxt_config(self) -> dict:
        """The `exchange.ccxt_config` that points a ccxt.binance here (every API url, so that nothing
        it sends leaves the machine unlogged), spot markets only, rate limiter off."""
        root = self.url.removesuffix("/api/v3")
        return {
            "urls": {"api": {name: root + urlparse(url).path for name, url in BINANCE_API.items()}},
            "options": {"fetchMarkets": {"types": ["spot"]}},
            "enableRateLimit": False,
            "timeout": int(self.timeout_s * 1000),
        }

    def fail_next(self, n: int, fault: object, *, after: int = 0) -> None:
        """Fail `n` requests with `fault`, after answering the next `after` normally: "timeout"
        (hang past the client's timeout), an HTTP status such as 418, 429, 500, 503, or, for a
        klines request (others are answered normally), "truncated" (the JSON cut short), "empty"
        (no candles), "changed" (the first candle sent twice, the second time with another volume)
        or "off_grid" (the second candle's open time a second late)."""
        with self._lock:
            self._faults += [None] * after + [fault] * n

    def serve_raw(self, symbol: str, values: dict[int, list]) -> None:
        """Serve {open time ms: [open, high, low, close, volume]} of `symbol` as given (strings, None,
        numbers: what goes into the JSON) instead of the candles' values."""
        base, quote = symbol.split("/")
        for row in self.rows[base + quote]:
            if row[0] in values:
                row[1:6] = values[row[0]]

    def stall(self, symbol: str, since: int) -> None:
        """Serve no candle of `symbol` with open time >= `since` (ms), as when one market lags."""
        base, quote = symbol.split("/")
        self.stalled[base + quote] = since

    def start(self) -> "ExchangeServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # server_close waits for the handlers: end any injected timeout
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _klines(self, q: dict) -> tuple[int, object]:
        rows = self.rows.get(q.get("symbol"))
        if rows is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        if q.get("interval") != self.timeframe:
            return 400, {"code": -1120, "msg": "Invalid interval."}
        limit = min(int(q.get("limit", 500)), self.page_limit)
        start, end = q.get("startTime"), q.get("endTime")
        until = min(self.now, self.stalled.get(q["symbol"], self.now))
        served = [r for r in rows if r[0] < until and (end is None or r[0] <= int(end))]
        if start is not None:
            return 200, [r for r in served if r[0] >= int(start)][:limit]
        return 200, served[-limit:]

    @staticmethod
    def _spoil(page: list, fault: str) -> list | str:
        if fault == "empty":
            return []
        if fault == "truncated":  # cut short after a few rows (ccxt parses what it gets char by char)
            return json.dumps(page)[:200]
        page = [list(r) for r in page]
        if fault == "changed" and page:
            page.insert(1, page[0][:5] + [repr(float(page[0][5]) + 1)] + page[0][6:])
        elif fault == "off_grid" and len(page) > 1:
            page[1][0] += 1000
        return page

    def _answer(self, path: str, q: dict) -> tuple[int, object]:
        if path == "/api/v3/ping":
            return 200, {}
        if path == "/api/v3/time":
            return 200, {"serverTime": self.now}
        if path == "/api/v3/exchangeInfo":
            symbols = [
                {"symbol": m, "status": "TRADING", "baseAsset": b, "quoteAsset": q_}
                for m, (b, q_) in self.markets.items()
            ]
            return 200, {"timezone": "UTC", "serverTime": self.now, "rateLimits": [], "symbols": symbols}
        if path == "/api/v3/klines":
            return self._klines(q)
        return 404, {"code": -1, "msg": f"not served here: {path}"}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                url = urlparse(self.path)
                with server._lock:
                    server.requests.append(self.path)
                    fault = server._faults.pop(0) if server._faults else None
                headers = {}
                if fault == "timeout":
                    server._stopping.wait(4 * server.timeout_s)
                    status, body = 504, {"code": -1007, "msg": "Timeout"}
                elif fault in (418, 429):
                    status, body = fault, {"code": -1003, "msg": "Too many requests."}
                    if server.retry_after is not None:
                        headers["Retry-After"] = f"{server.retry_after:g}"
                elif isinstance(fault, int):
                    status, body = fault, {}  # a bare 5xx, as from a proxy in front of the API
                else:
                    q = {k: v[-1] for k, v in parse_qs(url.query).items()}
                    status, body = server._answer(url.path, q)
                    if fault is not None and url.path == "/api/v3/klines" and status == 200:
                        body = server._spoil(body, fault)
                data = (body if isinstance(body, str) else json.dumps(body)).encode()
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (an injected timeout)

            do_GET = do_POST = do_DELETE = do_PUT = _serve

            def log_message(self, *args):
                pass

        return Handler
