"""One paper account over several symbols: a replay equals botter-backtest's portfolio fill for fill
(the portfolio equity included), status shows each symbol and the account, and the live feed trades a
candle time once every symbol's candle is in, or declared missing."""

import logging
import re

import numpy as np
import pandas as pd
import pytest
from exchange_server import ExchangeServer
from paper_helpers import POLICY, assert_same_ledger, settings, tables, trade_into
from test_paper import assert_same_fills, expected_fills
from test_paper_live import TF, until

from botter.cli.backtest import backtest as _backtest
from botter.cli.paper import paper as _paper
from botter.config import compose
from botter.data import load_sample
from botter.data.candles import to_ms
from botter.data.fetch import make_exchange
from botter.paper import session
from botter.paper.feeds import Poll, Replay
from botter.paper.ledger import Ledger
from botter.paper.report import curves

PAIR = ["ETH/BTC", "LTC/BTC"]
START, END = "2018-01-16T00:00", "2018-01-16T20:00"  # after the tiny run's data: out of sample for both
CASH = float(compose("backtest").backtest.cash)  # the shipped starting equity, split over the symbols


@pytest.fixture(scope="module")
def pair(tiny_run, tmp_path_factory):
    """botter-paper symbols=[ETH/BTC,LTC/BTC] and botter-backtest of the run's model on the same
    candles and period: (the backtest's results, the paper ledger's path)."""
    costs = [f"backtest.{k}={v}" for k, v in settings(tiny_run).items()]
    _paper(compose("paper", [f"run_dir={tiny_run}", "name=pair", "symbols=[ETH/BTC,LTC/BTC]", f"feed.start='{START}'",
                             f"feed.end='{END}'", "progress=false", *costs]))
    out = tmp_path_factory.mktemp("backtest") / "pair"
    results = _backtest(compose("backtest", [
        f"run_dir={tiny_run}", "data=sample", "data.symbols=[ETH/BTC,LTC/BTC]", "data.start='2018-01-15T20:00'",
        "data.end='2018-01-16T21:00'", f"period.start='{START}'", f"period.end='{END}'", f"out_dir={out}", *costs]))
    return results, session.paper_dir(tiny_run, "pair") / "ledger.sqlite"


def test_a_portfolio_replay_equals_the_portfolio_backtest(pair):
    results, path = pair
    t = tables(path)
    for symbol in PAIR:
        result = results[symbol]
        period = load_sample(symbol).loc[result.equity.index]
        bars = t["bars"][t["bars"]["symbol"] == symbol]
        assert bars["time"].tolist() == period.index.tolist()
        assert len(result.trades) > 5
        assert_same_fills(t["fills"][t["fills"]["symbol"] == symbol].reset_index(drop=True),
                          expected_fills(result, period))
        # the position still open at the end is closed out by the backtest only
        np.testing.assert_allclose(bars["equity"].iloc[:-1], result.equity.iloc[:-1], rtol=1e-9)
    with Ledger(path, readonly=True) as ledger:
        equity, hold = curves(ledger)["portfolio"]
    want = results["portfolio"]
    assert equity.index.equals(want.equity.index)
    np.testing.assert_allclose(equity.iloc[:-1], want.equity.iloc[:-1], rtol=1e-9)
    np.testing.assert_allclose(hold, want.buy_hold, rtol=1e-12)
    assert equity.iloc[0] == pytest.approx(CASH, rel=1e-12)


def test_status_shows_each_symbol_and_the_account(tiny_run, pair, capsys):
    _paper(compose("paper", [f"run_dir={tiny_run}", "name=pair", "mode=status"]))
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == [*PAIR, "portfolio"]
    equity = [float(x) for x in re.search(r"\nEquity +(\S+) +(\S+) +(\S+)\n", out).groups()]
    assert equity[2] == pytest.approx(equity[0] + equity[1], rel=1e-12)
    start = [float(x) for x in re.search(r"\nStart equity +(\S+) +(\S+) +(\S+)\n", out).groups()]
    assert start == [CASH / 2, CASH / 2, CASH]
    assert re.search(r"\nSymbol +ETH/BTC 5m +LTC/BTC 5m +ETH/BTC, LTC/BTC\n", out)


def test_the_live_feed_trades_a_candle_time_once_every_symbol_is_in_or_declared_missing(tiny_run, tmp_path, caplog):
    """LTC/BTC has a hole (the exchange has a later candle: traded without it at once) and then lags
    for good (traded without it `missing_after` seconds after each close). The live ledger equals the
    replay of the candles it had."""
    first, last = to_ms(START), to_ms(END)
    eth, ltc = (load_sample(s).loc[:pd.Timestamp(last, unit="ms", tz="UTC")] for s in PAIR)
    hole, stall = ltc.index[ltc.index >= START][[40, 120]]
    with ExchangeServer({"ETH/BTC": eth, "LTC/BTC": ltc.drop(hole)}, "5m") as server:
        server.stall("LTC/BTC", to_ms(stall))
        server.now = first + TF + 10_000  # each poll 10 s after a close: a missing candle is waited for once
        exchange = make_exchange("binance", server.ccxt_config())
        feed = Poll(exchange, PAIR, "5m", policy=POLICY, poll_s=0.7, missing_after=30,
                    wait=until(server, last + 2 * TF))  # the last candle time waits for LTC/BTC once
        with caplog.at_level(logging.WARNING, logger="botter.paper.feeds"):
            trade_into(tiny_run, tmp_path / "live.sqlite", feed, symbols=PAIR)
        lagging = [r.getMessage() for r in caplog.records if "traded without it" in r.getMessage()]
    assert len(lagging) == ((eth.index >= stall) & (eth.index <= END)).sum()
    assert lagging[0] == f"LTC/BTC: no {stall} candle 30 s after its close: traded without it"
    kept = {"ETH/BTC": eth, "LTC/BTC": ltc.drop(hole).loc[:stall - pd.Timedelta(minutes=5)]}
    trade_into(tiny_run, tmp_path / "replay.sqlite", Replay(kept, start=START, end=END, progress=False), symbols=PAIR)
    want = tables(tmp_path / "replay.sqlite")
    assert_same_ledger(tmp_path / "live.sqlite", want)
    ltc_bars = want["bars"][want["bars"]["symbol"] == "LTC/BTC"]["time"]
    assert hole not in set(ltc_bars) and ltc_bars.iloc[-1] < stall
