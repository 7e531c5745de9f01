"""Fetching from a real ccxt.binance pointed at the local fake Binance server (no internet)."""

import ccxt
import pandas as pd
import pytest
from exchange_server import ExchangeServer

from botter.config import compose
from botter.data import load_candles, load_sample, store_path
from botter.data.candles import to_ms
from botter.data.fetch import call, fetch_to_store, make_exchange
from botter.data.store import append_store
from botter.errors import BotterError

TF_MS = 300_000
POLICY = dict(compose("fetch").validate)
RETRY = {"tries": 4, "base_delay": 0.001, "max_delay": 0.01}

@pytest.fixture(scope="module")
def xmr():
    return load_sample("XMR/BTC")


@pytest.fixture
def server(eth, xmr):
    # Its client timeout is far above a local answer, so only injected timeouts are retried: the
    # tests count requests exactly.
    with ExchangeServer({"ETH/BTC": eth, "XMR/BTC": xmr}, "5m") as s:
        yield s


def fetch(server, tmp_path, symbol="ETH/BTC", timeframe="5m", since="2018-01-01", **kw):
    exchange = make_exchange("binance", server.ccxt_config())
    path = store_path(tmp_path, "binance", symbol, timeframe)
    return fetch_to_store(
        exchange, symbol, timeframe, path, since=since, policy=POLICY, retry=RETRY, progress=False, **kw
    )


def klines(server):
    """The klines requests `server` was sent, in order."""
    return [p for p in server.requests if p.startswith("/api/v3/klines")]


def test_multi_page_fetch_is_exact(server, tmp_path, eth):
    stored, added, dropped = fetch(server, tmp_path)
    assert (added, dropped, len(stored)) == (5760, 0, 5760)
    assert stored.index[0] == pd.Timestamp("2018-01-10 04:55", tz="UTC")
    assert stored.index[-1] == pd.Timestamp("2018-01-30 04:50", tz="UTC")
    pd.testing.assert_frame_equal(stored, eth)
    pd.testing.assert_frame_equal(load_candles("binance", "ETH/BTC", "5m", data_dir=tmp_path), eth)
    # Binance's page is 1000 candles: 6 pages, each starting after the last candle of the one before.
    pages = klines(server)
    assert len(pages) == 6
    starts = [int(p.split("startTime=")[1].split("&")[0]) for p in pages]
    first = to_ms(eth.index[0])
    assert starts == [to_ms("2018-01-01")] + [
        first + k * 1000 * TF_MS for k in range(1, 6)
    ]
    assert all("limit=1000" in p for p in pages)
    # Candles only: nothing but markets, server time and klines was asked for.
    assert {p.split("?")[0] for p in server.requests} == {"/api/v3/exchangeInfo", "/api/v3/time", "/api/v3/klines"}


def test_second_run_adds_nothing(server, tmp_path, eth):
    fetch(server, tmp_path)
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    mtime = path.stat().st_mtime_ns
    stored, added, _ = fetch(server, tmp_path)
    assert added == 0
    assert path.stat().st_mtime_ns == mtime
    pd.testing.assert_frame_equal(stored, eth)


def test_until_bounds_the_range(server, tmp_path, eth):
    stored, added, _ = fetch(server, tmp_path, since="2018-01-12", until="2018-01-13")
    assert added == 288  # one day of 5m candles
    pd.testing.assert_frame_equal(stored, eth.loc["2018-01-12":"2018-01-12 23:55"])


def test_interrupted_fetch_resumes_without_gaps_or_duplicates(server, tmp_path, eth):
    # Two pages come through, then the exchange stays down longer than the retries last.
    server.fail_next(RETRY["tries"], 503, after=3)  # markets, time, page 1, then page 2 fails
    with pytest.raises(BotterError, match="could not reach the exchange after 4 tries"):
        fetch(server, tmp_path)
    partial = load_candles("binance", "ETH/BTC", "5m", data_dir=tmp_path)
    pd.testing.assert_frame_equal(partial, eth.iloc[:1000])  # whole pages only
    server.requests.clear()
    stored, added, _ = fetch(server, tmp_path)
    assert added == 4760
    pd.testing.assert_frame_equal(stored, eth)
    # The second run starts right after the last stored candle.
    first = to_ms(eth.index[1000])
    assert f"startTime={first}" in klines(server)[0]


@pytest.mark.parametrize("fault", ["timeout", 429, 500, 502, 503])
def test_network_trouble_is_retried_and_the_result_exact(server, tmp_path, eth, fault):
    server.fail_next(1, fault)  # load_markets
    server.fail_next(2, fault, after=2)  # the first page
    server.fail_next(1, fault, after=3)  # a later page
    stored, added, _ = fetch(server, tmp_path)
    assert added == 5760
    pd.testing.assert_frame_equal(stored, eth)
    assert len(klines(server)) == 6 + 3


def test_open_candle_is_not_stored(server, tmp_path, eth):
    server.now = to_ms(eth.index[3000]) + TF_MS // 2  # candle 3000 is still open
    stored, added, _ = fetch(server, tmp_path)
    assert added == 3000
    assert stored.index[-1] == eth.index[2999]
    server.now = to_ms(eth.index[-1]) + TF_MS  # all have closed now
    stored, added, _ = fetch(server, tmp_path, since=None)
    assert added == 2760
    pd.testing.assert_frame_equal(stored, eth)


def test_gaps_are_kept_as_gaps(server, tmp_path, xmr):
    stored, added, _ = fetch(server, tmp_path, symbol="XMR/BTC")
    assert added == 5758
    pd.testing.assert_frame_equal(stored, xmr)


def test_unknown_symbol_fails_at_once(server, tmp_path):
    with pytest.raises(BotterError, match="unknown symbol 'NOPE/BTC' on binance"):
        fetch(server, tmp_path, symbol="NOPE/BTC")
    assert klines(server) == []


def test_unsupported_timeframe_fails_at_once(server, tmp_path):
    with pytest.raises(BotterError, match="binance has no timeframe '7m'"):
        fetch(server, tmp_path, timeframe="7m")
    assert klines(server) == []


def test_unreachable_exchange_fails_after_bounded_retries(tmp_path):
    with ExchangeServer({}, "5m") as gone:
        config = gone.ccxt_config()
    exchange = make_exchange("binance", config)
    with pytest.raises(BotterError, match="could not reach the exchange after 4 tries"):
        fetch_to_store(exchange, "ETH/BTC", "5m", tmp_path / "x.parquet", since=0, policy=POLICY, retry=RETRY)


def test_unknown_exchange_id():
    with pytest.raises(BotterError, match="not a ccxt exchange id"):
        make_exchange("binanse")


def test_call_retries_network_errors_a_bounded_number_of_times():
    calls = []

    def flaky(error):
        calls.append(1)
        raise error

    with pytest.raises(BotterError, match="after 3 tries"):
        call(flaky, ccxt.RequestTimeout("slow"), tries=3, base_delay=0)
    assert len(calls) == 3
    for error, message in [
        (ccxt.AuthenticationError("bad key"), "refused the API key"),
        (ccxt.BadSymbol("no such market"), "unknown symbol"),
        (ccxt.BadRequest("Invalid interval"), "rejected the request"),
    ]:
        calls.clear()
        with pytest.raises(BotterError, match=message):
            call(flaky, error, tries=3, base_delay=0)
        assert len(calls) == 1


def test_keys_come_from_the_environment_only(monkeypatch):
    monkeypatch.setenv("BOTTER_BINANCE_API_KEY", "k-123")
    monkeypatch.setenv("BOTTER_BINANCE_SECRET", "s-456")
    exchange = make_exchange("binance")
    assert (exchange.apiKey, exchange.secret) == ("k-123", "s-456")
    with pytest.raises(BotterError, match="BOTTER_BINANCE_SECRET"):
        make_exchange("binance", {"secret": "in-a-file"})


def test_sandbox_mode_keeps_the_configured_urls():
    exchange = make_exchange("binance", {"urls": {"api": {"public": "http://127.0.0.1:9/api/v3"}}}, sandbox=True)
    assert exchange.urls["api"]["public"] == "http://127.0.0.1:9/api/v3"
    assert "testnet" in exchange.urls["api"]["private"]


def test_ccxt_config_is_passed_through_with_the_rate_limiter_on():
    exchange = make_exchange("binance", {"timeout": 1234, "options": {"defaultType": "spot"}})
    assert (exchange.timeout, exchange.options["defaultType"], exchange.enableRateLimit) == (1234, "spot", True)


def test_a_write_killed_mid_way_leaves_the_old_file(server, tmp_path, eth, monkeypatch):
    fetch(server, tmp_path, until="2018-01-11")
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    before = path.read_bytes()

    def dies_half_way(self, target, *args, **kwargs):
        with open(target, "wb") as f:
            f.write(b"PAR1 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_parquet", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        fetch(server, tmp_path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_pages_are_written_whole_as_they_come(server, tmp_path, eth, monkeypatch):
    import botter.data.fetch as fetch_module

    sizes = []

    def spy(path, candles, *, stored=None):
        sizes.append(len(candles))
        return append_store(path, candles, stored=stored)

    monkeypatch.setattr(fetch_module, "WRITE_EVERY_S", 0.0)
    monkeypatch.setattr(fetch_module, "append_store", spy)
    stored, _, _ = fetch(server, tmp_path)
    assert sizes == [1000] * 5 + [760]
    pd.testing.assert_frame_equal(stored, eth)


def test_keys_are_blanked_out_of_error_messages(monkeypatch):
    monkeypatch.setenv("BOTTER_BINANCE_API_KEY", "k-123")
    exchange = make_exchange("binance")

    def leaky(*args, **kwargs):
        raise ccxt.ExchangeError("GET /x?apiKey=k-123 failed")

    monkeypatch.setattr(exchange, "fetch", leaky)  # the HTTP layer under every request
    with pytest.raises(BotterError) as e:
        call(exchange.fetch_time, tries=1)
    assert "k-123" not in str(e.value) and "apiKey=***" in str(e.value)
