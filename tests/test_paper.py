"""Paper trading: the ledger's one-transaction-per-candle rule and the broker's parity with the backtest."""

import sqlite3

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_stats import moved

from botter.backtest import backtest
from botter.config import compose
from botter.data import load_sample
from botter.errors import BotterError
from botter.paper.broker import Broker
from botter.paper.ledger import Fill, Ledger, Step
from botter.paper.report import summary
from botter.signals import Held

COSTS = {"fee": 0.001, "slippage_bps": 5.0, "size": 0.5}


def expected_fills(result, candles: pd.DataFrame) -> pd.DataFrame:
    """The backtest's trades as the fills a paper broker makes: one row per candle open where the
    position changes (a flip's exit and entry summed), leaving out the exits at a close: the one the
    backtest adds at the last close (a paper position stays open) and a ruin's (the broker's `mark`
    closes the account out, no fill)."""
    t = result.trades
    legs = [pd.DataFrame({"time": t["EntryTime"], "buy": t["Side"] > 0, "quantity": t["Size"].abs(),
                          "price": t["EntryPrice"]})]
    closed = t["ExitReason"] == "target"
    legs.append(pd.DataFrame({"time": t["ExitTime"][closed], "buy": t["Side"][closed] < 0,
                              "quantity": t["Size"][closed].abs(), "price": t["ExitPrice"][closed]}))
    legs = pd.concat(legs)
    out = legs.groupby("time").agg(buy=("buy", "first"), quantity=("quantity", "sum"), price=("price", "first"))
    out["side"] = np.where(out.pop("buy"), "buy", "sell")
    return out.reset_index()[["time", "side", "quantity", "price"]]


def paper_trade(candles: pd.DataFrame, target, *, cash: float = 1000.0, broker: Broker | None = None,
                states: list | None = None, ledger: Ledger | None = None, **costs):
    """Run the Broker candle by candle like the paper loop: (fills frame, equity per candle).

    broker: one to go on with (else a new account of `cash`); states: gets the (cash, position, side)
    a ledger records at each close; ledger: gets each candle's Step."""
    broker = broker or Broker(cash=cash, **costs)
    times = candles.index.as_unit("ms").asi8
    fills, equity = [], []
    for i, row in enumerate(candles[["open", "high", "low", "close", "volume"]].itertuples(index=False)):
        f = None
        if i:
            f = broker.execute(int(target[i - 1]), row.open, time=int(times[i]), order_time=int(times[i - 1]))
            fills += [f] if f else []
        equity.append(broker.mark(row.close))
        if states is not None:
            states.append((broker.cash, broker.position, broker.side))
        if ledger is not None:
            ledger.record([Step(symbol="ETH/BTC", candle=(int(times[i]), *row), fill=f, position=broker.position,
                                side=broker.side, cash=broker.cash, equity=equity[-1],
                                probs={"p_down": np.nan, "p_up": np.nan}, target=int(target[i]))])
    frame = pd.DataFrame([f.__dict__ for f in fills], columns=list(Fill.__dataclass_fields__))
    frame["time"] = pd.to_datetime(frame["time"], unit="ms", utc=True)
    return frame, np.array(equity)


def assert_same_fills(paper: pd.DataFrame, expected: pd.DataFrame):
    assert len(paper) == len(expected)
    assert (paper["time"].to_numpy() == expected["time"].to_numpy()).all()
    assert (paper["side"].to_numpy() == expected["side"].to_numpy()).all()
    for col, rtol in (("quantity", 1e-9), ("price", 1e-12)):
        np.testing.assert_allclose(paper[col].astype(float), expected[col].astype(float), rtol=rtol)


def test_broker_by_hand():
    broker = Broker(cash=1000.0, fee=0.001, slippage_bps=10.0, size=0.5)
    assert broker.execute(0, 100.0, time=1, order_time=0) is None  # flat already: no order
    f = broker.execute(1, 100.0, time=1, order_time=0)
    # Buy at 100.1 (10 bps against us) as much as 0.5 * 1000 buys with its 0.1 % fee: 500 / 1.001.
    qty = 500 / (100.1 * 1.001)
    assert (f.side, f.price) == ("buy", pytest.approx(100.1))
    assert f.quantity == pytest.approx(qty)
    assert f.fee == pytest.approx(0.001 * 500 / 1.001)
    assert broker.cash == pytest.approx(500)
    assert broker.mark(110.0) == pytest.approx(500 + qty * 110)
    f = broker.execute(-1, 110.0, time=2, order_time=1)  # flip: sell the long and as much again short
    cash = 500 + qty * 109.89 * (1 - 0.001)
    assert f.side == "sell" and f.price == pytest.approx(109.89)
    assert f.quantity == pytest.approx(qty + 0.5 * cash / (109.89 * 1.001))
    assert broker.position == pytest.approx(-0.5 * cash / (109.89 * 1.001))
    assert broker.mark(109.89) == pytest.approx(cash - 0.001 * 0.5 * cash / 1.001)


def test_broker_equals_backtest_on_real_candles():
    candles = load_sample("ETH/BTC").iloc[:2000]
    rng = np.random.default_rng(7)
    target = np.repeat(rng.integers(-1, 2, 200), 10)
    paper, equity = paper_trade(candles, target, **COSTS)
    result = backtest(candles, target, cash=1000.0, **COSTS)
    assert len(paper) > 100
    assert_same_fills(paper, expected_fills(result, candles))
    # Equity marked at every close agrees, but for the last candle where the backtest closes out.
    np.testing.assert_allclose(equity[:-1], result.equity.to_numpy()[:-1], rtol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    moves=st.lists(st.floats(-0.1, 0.25), min_size=3, max_size=40),  # wide enough to ruin shorts
    target=st.lists(st.sampled_from([-1, 0, 1]), min_size=40, max_size=40),
    fee=st.floats(0, 0.01),
    slippage_bps=st.floats(0, 50),
    size=st.floats(0.05, 1.0),
)
def test_broker_equals_backtest_for_all_inputs(moves, target, fee, slippage_bps, size):
    opens = 100 * np.exp(np.cumsum(moves))
    closes = opens * np.exp(np.roll(moves, -1) / 2)
    index = pd.date_range("2024-01-01", periods=len(opens), freq="5min", tz="UTC", name="time")
    candles = pd.DataFrame({"open": opens, "high": np.maximum(opens, closes), "low": np.minimum(opens, closes),
                            "close": closes, "volume": 1.0}, index=index)
    target = np.array(target[: len(opens)])
    costs = {"fee": fee, "slippage_bps": slippage_bps, "size": size}
    paper, equity = paper_trade(candles, target, **costs)
    result = backtest(candles, target, cash=1000.0, **costs)
    assert_same_fills(paper, expected_fills(result, candles))
    np.testing.assert_allclose(equity[:-1], result.equity.to_numpy()[:-1], rtol=1e-9)


def step(t, *, fill=None, target=0, side=0, symbol="ETH/BTC"):
    return [Step(symbol=symbol, candle=(t, 1.0, 1.1, 0.9, 1.05, 10.0), fill=fill, position=0.0, side=side,
                 cash=100.0, equity=100.0, probs={"p_down": 0.4, "p_up": 0.6}, target=target,
                 signal=Held(target, 1))]


def test_ledger_records_each_candle_once(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path, {"symbols": ["ETH/BTC"]}) as ledger:
        assert ledger.states() == {} and ledger.last_time() is None
        ledger.record(step(300_000, target=1))
        ledger.record(step(600_000, fill=Fill(600_000, 300_000, "buy", 2.0, 1.0, 0.002), side=1, target=1))
        with pytest.raises(BotterError, match="already in"):
            # Same candle again, with a fill that would be new: the whole transaction is refused.
            ledger.record(step(600_000, fill=Fill(600_000, 300_000, "buy", 2.0, 1.0, 0.002), side=1))
        state = ledger.states()["ETH/BTC"]
        assert (state.time, state.side, state.target, state.signal) == (600_000, 1, 1, Held(1, 1))
        assert len(ledger.table("orders")) == 1 and len(ledger.table("fills")) == 1
        assert ledger.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # Another process sees the committed rows (WAL), and the tables as written.
    db = sqlite3.connect(path)
    assert db.execute("SELECT time, side, quantity, price, fee FROM fills").fetchall() == [
        (600_000, "buy", 2.0, 1.0, 0.002)]
    assert db.execute("SELECT count(*) FROM decisions").fetchone() == (2,)


def test_ledger_refuses_other_settings_once_it_has_traded(tmp_path):
    Ledger(tmp_path / "l.sqlite", {"symbols": ["ETH/BTC"], "fee": 0.003}).close()
    with Ledger(tmp_path / "l.sqlite", {"symbols": ["ETH/BTC"], "fee": 0.001}) as ledger:  # empty: free to change
        assert ledger.meta() == {"symbols": ["ETH/BTC"], "fee": 0.001}
        ledger.record(step(300_000))
    with Ledger(tmp_path / "l.sqlite", {"symbols": ["ETH/BTC"], "fee": 0.001}) as ledger:
        assert ledger.last_time() == 300_000
    with pytest.raises(BotterError, match="fee: ledger has 0.001, now 0.002.*name="):
        Ledger(tmp_path / "l.sqlite", {"symbols": ["ETH/BTC"], "fee": 0.002})


def test_broker_refuses_bad_costs_like_the_backtest():
    with pytest.raises(BotterError, match="size=1.5 must be a fraction of equity"):
        Broker(cash=1.0, fee=0.001, slippage_bps=1.0, size=1.5)


DEFAULTS = {k: compose("backtest").backtest[k] for k in ("fee", "slippage_bps", "size")}  # the shipped settings


def test_broker_resumes_from_every_state_the_ledger_holds_at_the_default_settings():
    candles = load_sample("ETH/BTC").iloc[:400]
    target = np.repeat(np.random.default_rng(3).integers(-1, 2, 40), 10)
    states = []
    whole, equity = paper_trade(candles, target, states=states, **DEFAULTS)
    assert min(cash for cash, _, side in states if side == 1) <= 1e-12  # a long at size 1 leaves no cash
    for k in range(1, len(candles) - 1, 7):  # killed after recording candle k, started again from its row
        cash, position, side = states[k]
        broker = Broker(cash=cash, position=position, side=side, **DEFAULTS)
        rest, rest_equity = paper_trade(candles.iloc[k:], target[k:], broker=broker)
        assert_same_fills(rest, whole[whole["time"] > candles.index[k]].reset_index(drop=True))
        np.testing.assert_allclose(rest_equity, equity[k:], rtol=1e-12)
    # what the sizing before fee-inclusive sizing left in ledgers: a long with cash just below 0
    broker = Broker(cash=-0.00086, position=10.0, side=1, **DEFAULTS)
    assert broker.execute(0, 1.0, time=1, order_time=0).quantity == 10.0


def test_broker_ruined_by_a_short_into_a_tripling_price_like_the_backtest_and_for_good():
    candles = moved(load_sample("ETH/BTC").iloc[:600], 300, 40)  # real candles, the price tripling from 300 on
    target = np.repeat(np.random.default_rng(5).integers(-1, 2, 60), 10)
    target[200:400] = -1
    states = []
    paper, equity = paper_trade(candles, target, states=states, **DEFAULTS)
    result = backtest(candles, target, cash=1000.0, **DEFAULTS)
    assert result.trades["ExitReason"].iloc[-1] == "ruin"
    ruin = result.trades["ExitBar"].iloc[-1]
    assert_same_fills(paper, expected_fills(result, candles))
    np.testing.assert_allclose(equity[:-1], result.equity.to_numpy()[:-1], rtol=1e-9)
    assert equity[ruin - 1] > 0 and (equity[ruin:] == 0).all()
    assert paper["time"].iloc[-1] < candles.index[ruin]  # no fill after the ruin, though the target moves
    # The ledger's row of the ruin candle (flat, no cash) rebuilds a broker that stays ruined.
    assert states[ruin] == (0.0, 0.0, 0)
    broker = Broker(cash=0.0, position=0.0, side=0, **DEFAULTS)
    assert broker.ruined and broker.execute(1, 1.0, time=1, order_time=0) is None and broker.mark(1.0) == 0
    rest, rest_equity = paper_trade(candles.iloc[ruin:], target[ruin:], broker=broker)
    assert len(rest) == 0 and (rest_equity == 0).all()


def test_paper_summary_figures_are_the_backtests(tmp_path):
    candles = load_sample("ETH/BTC").iloc[:500]
    target = np.repeat(np.random.default_rng(4).integers(-1, 2, 50), 10)
    target[-12:] = 0  # flat before the end: the backtest's close-out at the last close adds nothing
    meta = {"symbols": ["ETH/BTC"], "timeframe": "5m", "feed": "replay", "cash": 1000.0}
    with Ledger(tmp_path / "ledger.sqlite", meta) as ledger:
        paper_trade(candles, target, ledger=ledger, **DEFAULTS)
        paper = summary(ledger)
    result = backtest(candles, target, cash=1000.0, **DEFAULTS)
    assert result.stats["Max. Drawdown [%]"] < -1
    for column in ("ETH/BTC", "portfolio"):  # one symbol: the account is that symbol's
        for key in ("Return [%]", "Buy & Hold Return [%]", "Max. Drawdown [%]"):
            assert paper.loc[key, column] == pytest.approx(result.stats[key], rel=1e-9), key
        assert paper.loc["Fees", column] == pytest.approx(result.stats["Fees Paid"], rel=1e-9)
