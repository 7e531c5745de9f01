"""Fetching from a real ccxt.binance pointed at the local fake Binance server (no internet)."""

import re

import ccxt
import numpy as np
import pandas as pd
import pytest
from exchange_server import ExchangeServer

from botter.config import compose
from botter.data import load_candles, load_sample, store_path
from botter.data.candles import to_ms
from botter.data.fetch import Unavailable, call, fetch_to_store, make_exchange, retry_after
from botter.data.store import append_store, read_store
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


def fetch(server, tmp_path, symbol="ETH/BTC", timeframe="5m", since="2018-01-01", policy=POLICY, retry=RETRY, **kw):
    exchange = make_exchange("binance", server.ccxt_config())
    path = store_path(tmp_path, "binance", symbol, timeframe)
    return fetch_to_store(
        exchange, symbol, timeframe, path, since=since, policy=policy, retry=retry, progress=False, **kw
    )


def stored(tmp_path, symbol="ETH/BTC"):
    return load_candles("binance", symbol, "5m", data_dir=tmp_path)


def klines(server):
    """The klines requests `server` was sent, in order."""
    return [p for p in server.requests if p.startswith("/api/v3/klines")]


def test_multi_page_fetch_is_exact(server, tmp_path, eth):
    got = fetch(server, tmp_path)
    assert (got.added, got.replaced, got.report.rows, got.report.dropped, len(got.stored)) == (5760, 0, 5760, [], 5760)
    assert got.report.ok and got.notes == []
    assert got.stored.index[0] == pd.Timestamp("2018-01-10 04:55", tz="UTC")
    assert got.stored.index[-1] == pd.Timestamp("2018-01-30 04:50", tz="UTC")
    pd.testing.assert_frame_equal(got.stored, eth)
    pd.testing.assert_frame_equal(stored(tmp_path), eth)
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
    server.requests.clear()
    got = fetch(server, tmp_path)
    assert got.added == 0
    assert path.stat().st_mtime_ns == mtime
    pd.testing.assert_frame_equal(got.stored, eth)
    # It asks once more for the days before the first candle, and says that there are none.
    assert len(klines(server)) == 1
    assert got.notes == [("backfill: the exchange sent no ETH/BTC 5m candles from 2018-01-01 00:00 to 2018-01-10 04:55, "
                         "where the store begins")]
    # Without since it continues after the last candle: nothing has closed since.
    server.requests.clear()
    assert fetch(server, tmp_path, since=None).added == 0
    assert klines(server) == []


def test_until_bounds_the_range(server, tmp_path, eth):
    got = fetch(server, tmp_path, since="2018-01-12", until="2018-01-13")
    assert got.added == 288  # one day of 5m candles
    pd.testing.assert_frame_equal(got.stored, eth.loc["2018-01-12":"2018-01-12 23:55"])
    server.requests.clear()
    got = fetch(server, tmp_path, since="2018-01-12", until="2018-01-13")
    assert got.added == 0 and klines(server) == []
    assert "no candle is missing in the range asked: nothing to fetch" in got.notes[0]


def test_a_fetch_before_the_stored_range_backfills_it(server, tmp_path, eth):
    fetch(server, tmp_path, since="2018-01-20")
    got = fetch(server, tmp_path, since="2018-01-10")
    assert got.added == len(eth.loc[:"2018-01-19 23:55"])
    assert got.notes == []
    pd.testing.assert_frame_equal(stored(tmp_path), eth)


def test_holes_in_the_store_are_fetched(server, tmp_path, eth):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    append_store(path, pd.concat([eth.iloc[:100], eth.iloc[1100:1110], eth.iloc[1120:3500], eth.iloc[4000:5700]]))
    assert fetch(server, tmp_path, since=None).added == 60  # without since: after the last candle only
    server.requests.clear()
    assert fetch(server, tmp_path).added == 1000 + 10 + 500
    pd.testing.assert_frame_equal(stored(tmp_path), eth)
    # The days before the first candle and the holes at 100 and 1110 are less than a page apart: one
    # range, two pages; the hole at 3500 is a range of its own.
    starts = [int(p.split("startTime=")[1].split("&")[0]) for p in klines(server)]
    assert starts == [to_ms("2018-01-01"), to_ms(eth.index[1000]), to_ms(eth.index[3500])]


def test_interrupted_fetch_resumes_without_gaps_or_duplicates(server, tmp_path, eth):
    # Two pages come through, then the exchange stays down longer than the retries last.
    server.fail_next(RETRY["tries"], 503, after=3)  # markets, time, page 1, then page 2 fails
    with pytest.raises(BotterError, match=r"could not reach the exchange after 4 tries.*\[the fetch stopped at "
                                          r"2018-01-13 16:15: 1000 candles added before it are stored; run the same"):
        fetch(server, tmp_path)
    pd.testing.assert_frame_equal(stored(tmp_path), eth.iloc[:1000])  # whole pages only
    server.requests.clear()
    got = fetch(server, tmp_path)
    assert got.added == 4760
    pd.testing.assert_frame_equal(got.stored, eth)
    # The second run starts right after the last stored candle (after asking for the days before the first).
    assert f"startTime={to_ms(eth.index[1000])}" in klines(server)[1]


@pytest.mark.parametrize("fault", ["timeout", 429, 500, 502, 503])
def test_network_trouble_is_retried_and_the_result_exact(server, tmp_path, eth, fault):
    server.fail_next(1, fault)  # load_markets
    server.fail_next(2, fault, after=2)  # the first page
    server.fail_next(1, fault, after=3)  # a later page
    got = fetch(server, tmp_path)
    assert got.added == 5760
    pd.testing.assert_frame_equal(got.stored, eth)
    assert len(klines(server)) == 6 + 3


@pytest.mark.parametrize("fault", ["truncated", "empty"])
def test_a_bad_page_is_retried_and_the_result_exact(server, tmp_path, eth, fault):
    server.fail_next(2, fault, after=4)  # the third page, twice
    got = fetch(server, tmp_path)
    assert got.added == 5760 and got.report.ok
    pd.testing.assert_frame_equal(got.stored, eth)
    assert len(klines(server)) == 6 + 2


@pytest.mark.parametrize("fault, why", [("truncated", r"an unreadable page of candles from 2018-01-17 03:35: '\[\[1"),
                                        ("empty", ("no candles from 2018-01-17 03:35 on, although the exchange's clock "
                                                  r"\(2018-01-30 04:55\) says they have closed"))])
def test_a_bad_page_that_persists_fails_the_fetch_saying_how_far_it_got(server, tmp_path, eth, fault, why):
    server.fail_next(RETRY["tries"], fault, after=4)
    with pytest.raises(BotterError, match=f"the exchange sent a bad candle page 4 times .*{why}.*the fetch stopped at "
                                          "2018-01-17 03:35: 2000 candles added before it are stored"):
        fetch(server, tmp_path)
    pd.testing.assert_frame_equal(stored(tmp_path), eth.iloc[:2000])
    pd.testing.assert_frame_equal(fetch(server, tmp_path).stored, eth)  # the same command again fills the rest


def test_an_empty_page_after_the_last_candle_is_the_end(server, tmp_path, eth):
    server.now = to_ms(eth.index[-1]) + 10 * TF_MS  # the market stopped trading nine candles ago
    with pytest.raises(BotterError, match="if the market stopped trading, give until="):
        fetch(server, tmp_path, since=eth.index[-100])
    got = fetch(server, tmp_path, since=eth.index[-100], until=eth.index[-1] + pd.Timedelta("5min"))
    pd.testing.assert_frame_equal(got.stored, eth.iloc[-100:])


def test_retry_after_is_waited(server, tmp_path, eth, monkeypatch):
    import botter.data.fetch as fetch_module

    waits = []
    monkeypatch.setattr(fetch_module.time, "sleep", waits.append)
    server.retry_after = 0.5
    server.fail_next(1, 429, after=3)  # page 2
    server.fail_next(1, 418, after=1)  # page 3, then a 503 for its second try
    server.fail_next(1, 503)
    got = fetch(server, tmp_path, retry=RETRY | {"max_delay": 1.0})
    pd.testing.assert_frame_equal(got.stored, eth)
    assert waits == [0.5, 0.5, 2 * RETRY["base_delay"]]  # Retry-After where given, the backoff elsewhere


def test_a_retry_after_longer_than_max_delay_fails_at_once_saying_when(server, tmp_path):
    server.retry_after = 120
    server.fail_next(1, 429, after=2)
    with pytest.raises(BotterError, match=r"the exchange asks to wait 120 s before the next request \(too many "
                                          r"requests\): try again after \d{4}-\d\d-\d\d \d\d:\d\d UTC"):
        fetch(server, tmp_path)
    assert len(klines(server)) == 1


def test_open_candle_is_not_stored(server, tmp_path, eth):
    server.now = to_ms(eth.index[3000]) + TF_MS // 2  # candle 3000 is still open
    got = fetch(server, tmp_path)
    assert got.added == 3000
    assert got.stored.index[-1] == eth.index[2999]
    server.now = to_ms(eth.index[-1]) + TF_MS  # all have closed now
    got = fetch(server, tmp_path, since=None)
    assert got.added == 2760
    pd.testing.assert_frame_equal(got.stored, eth)


def test_gaps_are_kept_as_gaps(server, tmp_path, xmr):
    got = fetch(server, tmp_path, symbol="XMR/BTC")
    assert got.added == 5758
    assert got.report.gaps == [(pd.Timestamp("2018-01-27 14:40", tz="UTC"), 1),
                               (pd.Timestamp("2018-01-27 22:50", tz="UTC"), 1)]
    pd.testing.assert_frame_equal(got.stored, xmr)


def test_the_report_is_of_the_pages_received_and_says_what_was_done(server, tmp_path, eth):
    server.fail_next(1, "changed", after=3)  # page 2: its first candle twice, the second time with more volume
    server.fail_next(1, "off_grid")  # page 3: its second candle a second late
    got = fetch(server, tmp_path, policy=POLICY | {"changed_duplicates": "drop"})
    late = eth.index[2000]  # ccxt keeps `limit` candles of page 2's 1001: page 3 begins at candle 1999
    assert got.report.rows == 5760 + 1
    assert got.report.dropped == [(eth.index[1000], ("changed_duplicates",)), (late + pd.Timedelta("1s"), ("off_grid",))]
    assert got.report.gaps == [(late, 1)]
    text = got.report.summary()
    assert "changed_duplicates (open time seen before, other values): 1 at 2018-01-13 16:15: dropped, the first" in text
    assert "off_grid (open time not on the timeframe's grid): 1 at 2018-01-17 03:35: dropped" in text
    assert "gaps: 1 (1 candles missing) at 2018-01-17 03:35 (1 missing): left as gaps" in text
    pd.testing.assert_frame_equal(got.stored, eth.drop(late))


def test_a_candle_sent_twice_with_other_values_fails_by_default(server, tmp_path, eth):
    server.fail_next(1, "changed", after=3)
    with pytest.raises(BotterError, match=r"changed_duplicates.*2018-01-13 16:15.*1000 candles added before it"):
        fetch(server, tmp_path)
    pd.testing.assert_frame_equal(stored(tmp_path), eth.iloc[:1000])


def test_a_refetch_compares_and_repairs_with_conflicts_replace(server, tmp_path, eth):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    bad = eth.iloc[:3000].copy()
    bad.iloc[1234, 3] = 1e9  # a close no exchange sent
    append_store(path, bad)
    assert fetch(server, tmp_path).added == 2760  # only what is missing is asked for
    with pytest.raises(BotterError, match="1 candles differ from the stored ones .* the first at 2018-01-14 11:45"):
        fetch(server, tmp_path, refetch=True)
    got = fetch(server, tmp_path, refetch=True, conflicts="replace")
    assert (got.added, got.replaced) == (0, 1)
    pd.testing.assert_frame_equal(stored(tmp_path), eth)


def test_each_write_merges_what_others_wrote_meanwhile(server, tmp_path, eth, monkeypatch):
    import botter.data.fetch as fetch_module

    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    monkeypatch.setattr(fetch_module, "WRITE_EVERY_S", 0.0)
    real_fetch_page = fetch_module.fetch_page

    def page_then_another_writer(*args):
        page = real_fetch_page(*args)
        if args[3] == to_ms(eth.index[1000]):  # between the first and the second write of this fetch
            append_store(path, eth.iloc[4000:4100])  # as another botter-fetch would
        return page

    monkeypatch.setattr(fetch_module, "fetch_page", page_then_another_writer)
    got = fetch(server, tmp_path, until=eth.index[3000])
    assert got.added == 3000
    pd.testing.assert_frame_equal(stored(tmp_path), pd.concat([eth.iloc[:3000], eth.iloc[4000:4100]]))


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
    with pytest.raises(Unavailable, match="could not reach the exchange after 4 tries"):
        fetch_to_store(exchange, "ETH/BTC", "5m", store_path(tmp_path, "binance", "ETH/BTC", "5m"), since="2018-01-01",
                       policy=POLICY, retry=RETRY)


def test_unknown_exchange_id():
    with pytest.raises(BotterError, match="not a ccxt exchange id"):
        make_exchange("binanse")
    with pytest.raises(BotterError, match=r"not a ccxt exchange id \(local-<name> ids are for CSV imports only\)"):
        make_exchange("local-kaggle")


def test_call_retries_network_errors_a_bounded_number_of_times():
    calls = []

    def flaky(error):
        calls.append(1)
        raise error

    with pytest.raises(BotterError, match="after 3 tries"):
        call(flaky, ccxt.RequestTimeout("slow"), tries=3, base_delay=0)
    assert len(calls) == 3
    for error, message in [
        (ccxt.AuthenticationError("bad key"), "needs an API key, though candles need none and none was sent"),
        (ccxt.BadSymbol("no such market"), "unknown symbol"),
        (ccxt.BadRequest("Invalid interval"), "rejected the request"),
        (ccxt.ExchangeNotAvailable("binance GET https://x/api 404 Not Found"), r"refused the request \(HTTP 404\)"),
    ]:
        calls.clear()
        with pytest.raises(BotterError, match=message):
            call(flaky, error, tries=3, base_delay=0)
        assert len(calls) == 1


def test_candles_never_sign_a_request_even_with_keys_in_the_environment(server, tmp_path, eth, monkeypatch):
    monkeypatch.setenv("BOTTER_BINANCE_API_KEY", "k-123")
    monkeypatch.setenv("BOTTER_BINANCE_SECRET", "s-456")
    pd.testing.assert_frame_equal(fetch(server, tmp_path).stored, eth)
    assert {p.split("?")[0] for p in server.requests} == {"/api/v3/exchangeInfo", "/api/v3/time", "/api/v3/klines"}
    assert not any("signature=" in p for p in server.requests)
    # The server would see it: an exchange with the keys signs private calls while loading markets.
    server.requests.clear()
    with pytest.raises(ccxt.ExchangeError):
        make_exchange("binance", server.ccxt_config(), keys=True).load_markets()
    assert "signature=" in server.requests[0]


def test_keys_come_from_the_environment_only(monkeypatch):
    monkeypatch.setenv("BOTTER_BINANCE_API_KEY", "k-123")
    monkeypatch.setenv("BOTTER_BINANCE_SECRET", "s-456")
    public = make_exchange("binance")
    assert not public.apiKey and not public.secret
    exchange = make_exchange("binance", keys=True)
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
    with pytest.raises(BotterError, match=r"^interrupted \(Ctrl-C\) \[the fetch stopped at 2018-01-13 16:15: 0 candles "
                                          "added before it are stored; run the same command again"):
        fetch(server, tmp_path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [f".{path.name}.lock", path.name]


def test_pages_are_written_whole_as_they_come(server, tmp_path, eth, monkeypatch):
    import botter.data.fetch as fetch_module

    sizes = []

    def spy(path, candles, **kwargs):
        sizes.append(len(candles))
        return append_store(path, candles, **kwargs)

    monkeypatch.setattr(fetch_module, "WRITE_EVERY_S", 0.0)
    monkeypatch.setattr(fetch_module, "append_store", spy)
    pd.testing.assert_frame_equal(fetch(server, tmp_path).stored, eth)
    assert sizes == [1000] * 5 + [760]


def test_keys_are_blanked_out_of_error_messages(monkeypatch):
    monkeypatch.setenv("BOTTER_BINANCE_API_KEY", "k-123")
    exchange = make_exchange("binance", keys=True)

    def leaky(*args, **kwargs):
        raise ccxt.ExchangeError("GET /x?apiKey=k-123 failed")

    monkeypatch.setattr(exchange, "fetch", leaky)  # the HTTP layer under every request
    with pytest.raises(BotterError) as e:
        call(exchange.fetch_time, tries=1)
    assert "k-123" not in str(e.value) and "apiKey=***" in str(e.value)


def test_retry_after_reads_seconds_or_an_http_date_in_any_case():
    exchange = make_exchange("binance")
    assert retry_after(exchange) is None  # no answer yet
    exchange.last_response_headers = {"retry-after": "7"}
    assert retry_after(exchange) == 7.0
    later = pd.Timestamp.now("UTC") + pd.Timedelta(seconds=90)
    exchange.last_response_headers = {"Retry-After": later.strftime("%a, %d %b %Y %H:%M:%S GMT")}
    assert 0 < retry_after(exchange) <= 90  # the seconds left until that time
    exchange.last_response_headers = {"Retry-After": "soon"}
    assert retry_after(exchange) is None


@pytest.mark.parametrize("write_every", [0.0, 1e9])  # a write between pages, or only the last one
def test_ctrl_c_stores_what_came_and_says_how_far_it_got(server, tmp_path, eth, monkeypatch, write_every):
    import botter.data.fetch as fetch_module

    monkeypatch.setattr(fetch_module, "WRITE_EVERY_S", write_every)
    real_fetch_page = fetch_module.fetch_page

    def interrupted_at_page_3(*args):
        if args[3] == to_ms(eth.index[2000]):
            raise KeyboardInterrupt
        return real_fetch_page(*args)

    monkeypatch.setattr(fetch_module, "fetch_page", interrupted_at_page_3)
    with pytest.raises(BotterError, match=r"^interrupted \(Ctrl-C\) \[the fetch stopped at 2018-01-17 03:35: 2000 "
                                          r"candles added before it are stored; run the same command again to fetch "
                                          r"the rest\]$"):
        fetch(server, tmp_path)
    pd.testing.assert_frame_equal(stored(tmp_path), eth.iloc[:2000])


def test_a_full_disk_mid_fetch_says_how_far_it_got(server, tmp_path, eth, monkeypatch):
    import errno

    import botter.data.fetch as fetch_module

    monkeypatch.setattr(fetch_module, "WRITE_EVERY_S", 0.0)
    real = pd.DataFrame.to_parquet
    writes = []

    def full_after_one(self, target, **kwargs):
        writes.append(target)
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real(self, target, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full_after_one)
    with pytest.raises(BotterError) as e:
        fetch(server, tmp_path)
    assert str(e.value).startswith("cannot write the store ")
    assert "(No space left on device: " in str(e.value)
    assert str(e.value).endswith("[the fetch stopped at 2018-01-17 03:35: 1000 candles added before it are stored]")
    pd.testing.assert_frame_equal(stored(tmp_path), eth.iloc[:1000])
    assert not list(tmp_path.rglob("*.tmp"))


def test_filling_holes_stores_only_the_missing_candles_and_compares_no_other(server, tmp_path, eth):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    mine = eth.iloc[:3000].copy()
    mine.iloc[1050, 3] = 1e9  # a stored close the exchange does not send, between two holes
    append_store(path, pd.concat([mine.iloc[:1000], mine.iloc[1010:1100], mine.iloc[1105:3000]]))
    got = fetch(server, tmp_path, until=eth.index[3000])
    assert (got.added, got.replaced, got.kept) == (15, 0, 0)  # the holes only; the stored candles not compared
    pd.testing.assert_frame_equal(stored(tmp_path), mine)
    with pytest.raises(BotterError, match="1 candles differ from the stored ones .* the first at 2018-01-13 20:25"):
        fetch(server, tmp_path, until=eth.index[3000], refetch=True)  # comparing is what refetch does


class IgnoresStart(ExchangeServer):
    """An exchange that sends its newest candles whatever start time is asked for."""

    def _klines(self, q):
        return super()._klines({k: v for k, v in q.items() if k != "startTime"})


@pytest.mark.parametrize("stored_before", [0, 3000])
def test_an_exchange_that_ignores_the_start_time_fails_the_fetch(tmp_path, eth, stored_before):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    if stored_before:
        append_store(path, eth.iloc[:stored_before])
    asked = "2018-01-20 14:55" if stored_before else "2018-01-01 00:00"
    with IgnoresStart({"ETH/BTC": eth}, "5m") as server, pytest.raises(
            BotterError, match=rf"binance ignores the start time asked for: asked for candles from {asked}, it sent "
                               r"ones from 2018-01-26 17:35 \(its newest\), so it cannot be fetched page by page"):
        fetch(server, tmp_path, since=None if stored_before else "2018-01-01")
    assert len(read_store(path)) == stored_before  # nothing of its answer stored


def test_a_market_listed_later_is_fetched_whole(tmp_path, eth):
    # The page from `since` starts later than asked and reaches now, like an exchange that ignores
    # the start time: asked again one candle later, this one shows it does not.
    with ExchangeServer({"ETH/BTC": eth.iloc[-300:]}, "5m") as server:
        got = fetch(server, tmp_path, since="2018-01-01")
        pd.testing.assert_frame_equal(got.stored, eth.iloc[-300:])
        assert len(klines(server)) == 2


@pytest.mark.parametrize("clock", [0, 1_517_288_100_000_000, None])  # 1970, microseconds, no number
def test_an_exchange_clock_that_is_no_time_near_now_fails(server, tmp_path, clock):
    server.now = clock
    with pytest.raises(BotterError, match=r"binance's clock reads .*, no time between 2009 and this machine's"):
        fetch(server, tmp_path)
    assert klines(server) == []


@pytest.mark.parametrize("since, until, message", [
    ("2018-01-20", "2018-01-20", r"until=2018-01-20 00:00 is not after since=2018-01-20 00:00"),
    ("2018-01-20", "2018-01-10", r"until=2018-01-10 00:00 is not after since"),
    ("2018-02-01", None, (r"since=2018-02-01 00:00: no candle from then on has closed by the exchange's clock "
                          r"\(2018-01-30 04:55\)")),
    ("9999-01-01", None, r"since=9999-01-01 00:00: no candle from then on has closed"),
    ("1600-01-01", None, r"since=1600-01-01 00:00 is before 1970"),
    ("99999999999999999999", None, r"cannot read '99999999999999999999' as a time"),
    (99999999999999999999, None, r"cannot read 99999999999999999999 as a time"),
    ("2018-13-01", None, r"cannot read '2018-13-01' as a time"),
])
def test_a_range_that_cannot_hold_a_closed_candle_fails(server, tmp_path, since, until, message):
    with pytest.raises(BotterError, match=message):
        fetch(server, tmp_path, since=since, until=until)
    assert klines(server) == []


@pytest.mark.parametrize("since", ["20180125", 20180125, 1516838400, "1516838400", 1516838400000])
def test_since_as_a_date_epoch_seconds_or_ms(server, tmp_path, eth, since):
    got = fetch(server, tmp_path, since=since)
    pd.testing.assert_frame_equal(got.stored, eth.loc["2018-01-25":])


def test_a_store_with_a_candle_in_the_future_is_named(server, tmp_path, eth):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    append_store(path, pd.concat([eth.iloc[:10], eth.iloc[:1].set_axis(pd.DatetimeIndex(["2031-01-01"], tz="UTC")
                                                                       .as_unit("ms").rename("time"))]))
    with pytest.raises(BotterError, match=r"the store's last candle opens at 2031-01-01 00:00, and has not closed by the "
                                          r"exchange's clock \(2018-01-30 04:55\)"):
        fetch(server, tmp_path, since=None)


@pytest.mark.parametrize("header", ["inf", "1e400", "1e20"])
def test_an_absurd_retry_after_fails_at_once_in_one_line(server, tmp_path, header):
    server.fail_next(1, 429, after=2)
    server.retry_after = float(header)
    with pytest.raises(Unavailable, match=rf"the exchange asks to wait {re.escape(f'{float(header):g}')} s before the next request "
                                          r"\(too many requests\): try again much later"):
        fetch(server, tmp_path)


@pytest.mark.parametrize("retry, message", [
    ({"tries": 0}, r"retry.tries=0: give the number of calls to make, 1 or more"),
    ({"tries": -1}, r"retry.tries=-1"),
    ({"tries": 2.5}, r"retry.tries=2.5"),
    ({"max_delay": -1}, r"retry.max_delay=-1: give the seconds to wait, 0 or more"),
    ({"base_delay": float("nan")}, r"retry.base_delay=nan"),
])
def test_retry_settings_that_make_no_sense_are_refused(server, tmp_path, retry, message):
    with pytest.raises(BotterError, match=message):
        fetch(server, tmp_path, retry=RETRY | retry)
    assert server.requests == []


@pytest.mark.parametrize("status", [400, 403, 404, 451])
def test_a_request_the_exchange_refuses_for_good_is_not_retried(server, tmp_path, status):
    server.fail_next(1, status, after=2)
    with pytest.raises(BotterError, match=rf"the exchange refused the request \(HTTP {status}\): check exchange.id, "
                                          r"symbol, timeframe .*\[the fetch stopped at 2018-01-01 00:00: 0 candles "
                                          r"added before it are stored\]$") as e:
        fetch(server, tmp_path)
    assert "network" not in str(e.value) and "run the same command" not in str(e.value)
    assert len(klines(server)) == 1


def test_an_interval_the_exchange_does_not_have_says_no_run_it_again(server, tmp_path):
    server.timeframe = "1h"  # it lists 5m among binance's timeframes, but answers "Invalid interval."
    with pytest.raises(BotterError, match=r"rejected the request: check symbol and timeframe .*Invalid interval.*"
                                          r"added before it are stored\]$"):
        fetch(server, tmp_path)


def test_a_401_without_a_key_does_not_blame_the_key(server, tmp_path):
    server.fail_next(1, 401, after=2)
    with pytest.raises(BotterError, match="needs an API key, though candles need none and none was sent"):
        fetch(server, tmp_path)


def test_every_candle_dropped_fails_the_fetch(tmp_path, eth):
    with ExchangeServer({"ETH/BTC": eth.iloc[:20]}, "5m") as server:
        server.serve_raw("ETH/BTC", {to_ms(t): ["1", "2", "0.5", "1.5", "-1"] for t in eth.index[:20]})
        with pytest.raises(BotterError, match=r"every one of the 20 candles received was dropped, none stored: 20 "
                                              r"candles of 5m .*; negative_volume \(volume < 0\): 20 at"):
            fetch(server, tmp_path)
    assert not store_path(tmp_path, "binance", "ETH/BTC", "5m").exists()


def test_weekly_and_monthly_candles_are_fetched_whole(tmp_path):
    # As the store holds them: a DatetimeIndex without a freq.
    mondays = pd.DatetimeIndex(pd.date_range("2020-01-06", periods=120, freq="7D", tz="UTC"), freq=None).as_unit("ms")
    mondays = mondays.rename("time")
    weeks = pd.DataFrame({c: 1.0 + np.arange(120) for c in ("open", "high", "low", "close", "volume")}, index=mondays)
    with ExchangeServer({"ETH/BTC": weeks}, "1w", page_limit=50) as server:
        got = fetch(server, tmp_path, timeframe="1w", since="2020-01-01")
        pd.testing.assert_frame_equal(got.stored, weeks)
        assert got.report.ok
    firsts = pd.DatetimeIndex(pd.date_range("2015-01-01", periods=70, freq="MS", tz="UTC"), freq=None).as_unit("ms")
    firsts = firsts.rename("time")
    months = weeks.iloc[:70].set_axis(firsts)
    with ExchangeServer({"ETH/BTC": months}, "1M", page_limit=30) as server:
        server.now = to_ms("2020-11-01")  # the last one, October, closed at the 1st of November
        got = fetch(server, tmp_path, timeframe="1M", since="2015-01-01")
        pd.testing.assert_frame_equal(got.stored, months)
        server.now = to_ms("2020-10-31")  # October still open: not stored
        got = fetch(server, tmp_path / "open", timeframe="1M", since="2015-01-01")
        pd.testing.assert_frame_equal(got.stored, months.iloc[:-1])
