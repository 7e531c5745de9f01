"""The live feed (feed=ccxt) against the local fake Binance: new candles as its clock moves, faults,
catching up after downtime, the staleness warning, and never an order endpoint or a key."""

import logging
import os
import re
import signal
import subprocess

import pandas as pd
import pytest
from exchange_server import ExchangeServer
from paper_helpers import (
    POLICY,
    REPLAY,
    SYMBOL,
    assert_same_ledger,
    bars,
    paper_cli,
    settings,
    tables,
    trade_into,
    wait_for_bars,
)
from test_data_cli import overrides

from botter.cli.paper import paper as _paper
from botter.config import compose
from botter.data import load_candles, load_sample, store_path
from botter.data.candles import to_ms
from botter.data.fetch import fetch_to_store, make_exchange
from botter.errors import BotterError
from botter.paper import session
from botter.paper.feeds import Poll, Replay

TF = 300_000  # 5m in ms
POLL_S = 0.7  # the tests' wait() tells a poll's wait from a retry's (0.5 s doubling) by this
PUBLIC = re.compile(r"^/api/v3/(exchangeInfo|klines|time|ping)(\?|$)")


@pytest.fixture(scope="module")
def replayed(tiny_run):
    """The replay ledger of the run's test period: what the live feed must reproduce."""
    session.trade(tiny_run, name="reference", feed=REPLAY, backtest=settings(tiny_run), progress=False)
    return tables(session.paper_dir(tiny_run, "reference") / "ledger.sqlite")


@pytest.fixture
def server(replayed):
    """The exchange, serving ETH/BTC up to the last candle of the replay, its clock a minute into
    the candle after the first decision's (which it serves, still open)."""
    times = replayed["bars"]["time"]
    with ExchangeServer({SYMBOL: load_sample(SYMBOL).loc[: times.iloc[-1]]}, "5m") as s:
        s.now = to_ms(times.iloc[0]) + TF + 60_000
        yield s


def until(server, stop_at):
    """A feed's wait(): the server's clock moves one timeframe per wait until it reaches `stop_at` (ms)."""
    def wait(seconds):
        if server.now >= stop_at:
            return True
        server.now += TF
        return False
    return wait


def trade_live(run_dir, ledger_path, server, wait):
    """Trade the live feed into the ledger at `ledger_path` until `wait` says stop."""
    exchange = make_exchange("binance", server.ccxt_config())
    return trade_into(run_dir, ledger_path, Poll(exchange, [SYMBOL], "5m", policy=POLICY, poll_s=POLL_S, retry_s=0.5,
                                                 wait=wait))


def test_live_feed_trades_every_closed_candle_like_the_replay(tiny_run, replayed, server, tmp_path, caplog):
    end = to_ms(replayed["bars"]["time"].iloc[-1]) + TF  # the close of the last candle served
    steps = iter([0, 1, 2, 0, 1, 3, 1] * 1000)  # timeframes the clock moves per poll: some polls see none
    faults = {3: (1, "timeout"), 7: (2, 429), 12: (1, 503), 20: (3, 500)}
    polls = 0

    def wait(seconds):
        nonlocal polls
        polls += 1
        last = bars(tmp_path / "live.sqlite")[1]
        assert last + TF <= server.now, "traded a candle that was still open"
        if seconds == POLL_S and server.now <= end:  # a poll is done: it traded every closed candle
            assert last == server.now // TF * TF - TF
        if polls in faults:
            server.fail_next(*faults[polls])
        if server.now >= end + 6 * TF:  # at least three timeframes with nothing new: stop
            return True
        server.now += next(steps) * TF
        return False

    with caplog.at_level(logging.WARNING, logger="botter.paper.feeds"):
        n = trade_live(tiny_run, tmp_path / "live.sqlite", server, wait)
    assert n == len(replayed["bars"])
    assert_same_ledger(tmp_path / "live.sqlite", replayed)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("retrying" in m for m in messages) == 7  # every injected fault, each retried
    assert sum("no new ETH/BTC 5m candle" in m for m in messages) == 1  # warned once when it went quiet
    assert all(PUBLIC.match(r) for r in server.requests), [r for r in server.requests if not PUBLIC.match(r)]


def test_live_feed_catches_up_candles_missed_while_down(tiny_run, replayed, server, tmp_path):
    path = tmp_path / "live.sqlite"
    end = to_ms(replayed["bars"]["time"].iloc[-1]) + TF

    first = trade_live(tiny_run, path, server, until(server, server.now + 40 * TF))
    assert first == 41
    server.now += 50 * TF  # down for 50 candles
    second = trade_live(tiny_run, path, server, until(server, end))
    assert first + second == len(replayed["bars"])
    assert_same_ledger(path, replayed)


@pytest.mark.slow
def test_botter_paper_feed_ccxt_never_sends_keys_and_stops_on_sigterm(tiny_run, replayed, server):
    secret = "sEcReT-key-0123456789"
    env = {**os.environ, "BOTTER_BINANCE_API_KEY": secret, "BOTTER_BINANCE_SECRET": secret}
    # Only the urls: binance's options that skip its private endpoints when a key is set are left out,
    # so this shows the paper feed sends no key at all.
    config = {k: server.ccxt_config()[k] for k in ("urls", "enableRateLimit", "timeout")}
    config["options"] = {"fetchMarkets": {"types": ["spot"]}}
    cmd = paper_cli(tiny_run, "live", "feed=ccxt", "feed.poll_s=0.05", *overrides("exchange.ccxt_config", config))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = session.paper_dir(tiny_run, "live") / "ledger.sqlite"
    traded = 0
    while traded < 31 and proc.poll() is None:
        traded = wait_for_bars(path, traded + 1, proc)
        if traded < 31:
            server.now += TF  # one more candle closes
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    got = tables(path)
    assert len(got["bars"]) == 31  # the candle closed at the start, then each one as it closed
    for name in ("bars", "fills"):
        want = replayed[name][replayed[name]["time"] <= got["bars"]["time"].iloc[-1]]
        pd.testing.assert_frame_equal(got[name], want, check_exact=True)
    assert all(PUBLIC.match(r) for r in server.requests)
    written = out + err + "".join(p.read_bytes().decode("latin-1") for p in path.parent.iterdir())
    assert secret not in written
    # The ledger records the exchange: it does not go on with another one's candles.
    with pytest.raises(BotterError, match="exchange: ledger has 'binance', now 'binanceus'"):
        _paper(compose("paper", [*cmd[3:], "exchange.id=binanceus"]))


def test_bad_start_fails_at_once_with_the_fix(server):
    exchange = make_exchange("binance", server.ccxt_config())
    with pytest.raises(BotterError, match="unknown symbol 'DOGE/BTC'"):
        Poll(exchange, ["DOGE/BTC"], "5m", policy=POLICY, wait=lambda s: False).open(None, 5)
    server.fail_next(10, 503)
    exchange = make_exchange("binance", server.ccxt_config())
    with pytest.raises(BotterError, match="could not reach binance after 3 tries.*ccxt_config"):
        Poll(exchange, [SYMBOL], "5m", policy=POLICY, start_tries=3, wait=lambda s: False).open(None, 5)


def test_bad_live_candles_are_skipped_and_the_run_equals_a_replay_of_the_store(tiny_run, replayed, server,
                                                                                tmp_path, caplog):
    """A None volume, a "NaN" close and high < low from the exchange: each candle is recorded as
    skipped with its reason and is otherwise a missing candle, as it is missing from what botter-fetch
    stores; a restart right after one goes on; the ledger equals a replay of that store."""
    times = replayed["bars"]["time"]
    ordered = times[times.shift(1).isin(replayed["orders"]["time"])]  # candles whose open fills an order
    first = ordered[ordered > times.iloc[10]].iloc[0]
    bad = [first, first + pd.Timedelta(minutes=200), first + pd.Timedelta(minutes=205)]
    sample = load_sample(SYMBOL)
    raw = {t: [repr(float(x)) for x in sample.loc[t]] for t in bad}  # open, high, low, close, volume
    raw[bad[0]][4] = None  # no volume
    raw[bad[1]][3] = "NaN"
    raw[bad[2]][1], raw[bad[2]][2] = raw[bad[2]][2], raw[bad[2]][1]  # high < low
    server.serve_raw(SYMBOL, {to_ms(t): v for t, v in raw.items()})
    end = to_ms(times.iloc[-1]) + TF

    path = tmp_path / "live.sqlite"
    with caplog.at_level(logging.WARNING, logger="botter.paper.loop"):
        trade_live(tiny_run, path, server, until(server, to_ms(bad[0]) + TF))  # stops right after the first
        assert bars(path)[1] < to_ms(bad[0])  # the last record is the skipped candle
        trade_live(tiny_run, path, server, until(server, end))
    got = tables(path)
    skipped = got["skipped"]
    assert skipped["time"].tolist() == bad
    assert skipped["reason"].iloc[0] == skipped["reason"].iloc[1] == "nan (a value is missing (empty, NaN, n/a, null or -))"
    assert skipped["reason"].iloc[2].startswith("high_below_low (high < low)")
    assert skipped["candle"].iloc[0].endswith(", null]") and "NaN" in skipped["candle"].iloc[1]
    assert sum("skipped, not traded" in r.getMessage() for r in caplog.records) == 3
    assert not set(bad) & set(got["bars"]["time"])
    # The order placed before the first bad candle fills at the open of the next good one.
    before, after = times[times < bad[0]].iloc[-1], times[times > bad[0]].iloc[0]
    assert got["fills"].set_index("order_time").loc[before, "time"] == after

    # What botter-fetch stores from the same exchange, replayed, is the same run.
    store = store_path(tmp_path / "data", "binance", SYMBOL, "5m")
    fetch_to_store(make_exchange("binance", server.ccxt_config()), SYMBOL, "5m", store, since=to_ms(sample.index[0]), policy=POLICY,
                   retry={"tries": 1}, progress=False)
    stored = load_candles("binance", SYMBOL, "5m", data_dir=tmp_path / "data")
    assert stored.index.intersection(bad).empty
    trade_into(tiny_run, tmp_path / "replay.sqlite",
               Replay({SYMBOL: stored}, start=times.iloc[0], end=times.iloc[-1], progress=False))
    assert_same_ledger(tmp_path / "replay.sqlite", {k: v for k, v in got.items() if k != "skipped"})
    assert len(got["bars"]) == len(replayed["bars"]) - 3
