import json
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botter.backtest import backtest, backtest_predictions, fill
from botter.data import load_sample
from botter.errors import BotterError


def reference_loop(open_, close, target, *, fee, slippage_bps, size, cash):
    """The executable spec: the backtest rules, one candle at a time (also timed by bench_backtest.py).

    Returns (equity per candle, trades as [entry_bar, quantity, entry_price, exit_bar, exit_price,
    fees, pnl, exit_reason]).
    """
    n = len(close)
    equity = np.zeros(n)  # a ruined account stays at 0
    trades = []
    qty, pos = 0.0, 0
    fees = cash_in = 0.0  # of the open trade: its entry fee and the cash before it

    def close_trade(i, price, reason):
        nonlocal cash, qty, pos
        price, f = fill(-pos, price, qty, fee=fee, slippage_bps=slippage_bps)
        cash += qty * price - f
        trades[-1] += [i, price, fees + f, cash - cash_in, reason]
        qty, pos = 0.0, 0

    for i in range(n):
        want = target[i - 1] if i else 0  # decided at the close of i-1, filled at the open of i
        if want != pos:
            if pos:
                close_trade(i, open_[i], "target")
            if want and cash > 0:  # closed with nothing left: nothing opens (and the close below ruins)
                price, _ = fill(want, open_[i], 0.0, fee=fee, slippage_bps=slippage_bps)
                qty = size * want * cash / (price * (1 + fee))
                _, fees = fill(want, open_[i], qty, fee=fee, slippage_bps=slippage_bps)
                cash_in = cash
                cash -= qty * price + fees
                trades.append([i, qty, price])
                pos = want
        if cash + qty * close[i] <= 0:  # ruined: closed out at this close, nothing trades after
            if pos:
                close_trade(i, close[i], "ruin")
            break
        if i == n - 1 and pos:  # still open at the end: closed at the last close
            close_trade(i, close[i], "end")
        equity[i] = max(cash + qty * close[i], 0.0)  # a close-out at the end can leave <= 0: ruin too
    return equity, trades


def candles(opens, closes, freq="5min"):
    opens, closes = np.asarray(opens, float), np.asarray(closes, float)
    index = pd.date_range("2024-01-01", periods=len(opens), freq=freq, tz="UTC", name="time")
    return pd.DataFrame({"open": opens, "high": np.maximum(opens, closes), "low": np.minimum(opens, closes),
                         "close": closes, "volume": 1.0}, index=index)


COSTS = {"fee": 0.001, "slippage_bps": 0.0, "size": 1.0, "cash": 1000.0}


def test_fill_rule():
    assert fill(1, 100.0, 2.0, fee=0.001, slippage_bps=10) == pytest.approx((100.1, 0.2002))
    assert fill(-1, 100.0, -2.0, fee=0.001, slippage_bps=10) == pytest.approx((99.9, 0.1998))


def test_long_trade_by_hand():
    df = candles([100, 100, 110, 120], [100, 105, 115, 120])
    r = backtest(df, [1, 0, 0, 0], **{**COSTS, "cash": 1001.0})
    # buy 1001 / (100 * 1.001) = 10 at the open of candle 1: 1000 plus a fee of 1.0 take all the cash;
    # marked at 105; sell 10 at 110 (fee 1.1)
    assert r.equity.tolist() == pytest.approx([1001, 1050, 1098.9, 1098.9])
    t = r.trades.iloc[0]
    assert (t.EntryBar, t.ExitBar, t.Side, t.EntryPrice, t.ExitPrice, t.ExitReason) == (1, 2, 1, 100, 110, "target")
    assert (t.Size, t.Fees, t.PnL, t["Return [%]"]) == pytest.approx((10, 2.1, 97.9, 9.79))
    assert t.Duration == pd.Timedelta("5min")
    s = r.stats
    assert s["# Trades"] == 1 and s["Win Rate [%]"] == 100
    assert s["Fees Paid"] == pytest.approx(2.1)
    assert s["Return [%]"] == pytest.approx(97.9 / 10.01)
    assert s["Buy & Hold Return [%]"] == pytest.approx(20)
    assert s["Exposure Time [%]"] == 50  # the entry candle and the exit candle (closed at its open)
    assert s["Equity Peak"] == pytest.approx(1098.9)
    assert s["Max. Drawdown [%]"] == 0
    # 10 bought at 100 and sold at 110 over a mean equity of (1001 + 1050 + 2 * 1098.9) / 4
    assert s["Turnover [x]"] == pytest.approx(2100 / 1062.2)
    assert s["Fees / Gross PnL [%]"] == pytest.approx(2.1 / 100 * 100)


def test_short_held_to_the_end_closes_at_the_last_close_with_slippage():
    df = candles([100, 100, 90], [100, 95, 90])
    r = backtest(df, [-1, -1, -1], **{**COSTS, "slippage_bps": 10})
    sell = 100 * (1 - 0.001)  # 99.9: slippage against a seller
    qty = -1000 / (sell * 1.001)
    cash = 1000 - qty * sell - 0.001 * -qty * sell  # sold: cash in, fee out
    buy = 90 * (1 + 0.001)  # 90.09
    final = cash + qty * buy - 0.001 * -qty * buy
    assert r.equity.tolist() == pytest.approx([1000, cash + qty * 95, final])
    t = r.trades.iloc[0]
    assert (t.ExitBar, t.ExitPrice, t.Size) == pytest.approx((2, buy, qty))
    assert t.ExitTime == df.index[-1] and t.ExitReason == "end"  # closed in the last candle, at its close
    assert r.stats["Fees Paid"] == pytest.approx(0.001 * -qty * (sell + buy))


def test_reversal_is_two_trades_at_one_open():
    df = candles([100, 100, 110, 99], [100, 100, 110, 99])
    r = backtest(df, [1, -1, 0, 0], fee=0.0, slippage_bps=0.0, size=0.5, cash=1000.0)
    # long 5 at 100 -> +50; short 1050 * 0.5 / 110 at 110, bought back at 99 -> +52.5
    assert r.trades["PnL"].tolist() == pytest.approx([50, 52.5])
    assert r.trades["EntryBar"].tolist() == [1, 2] and r.trades["ExitBar"].tolist() == [2, 3]
    assert r.equity.iloc[-1] == pytest.approx(1102.5)


def test_a_short_into_a_price_that_more_than_doubles_is_ruined_at_that_close():
    df = candles([100, 100, 250, 250, 250], [100, 250, 250, 250, 250])
    r = backtest(df, [-1, 0, 1, 1, 0], fee=0.0, slippage_bps=0.0, size=1.0, cash=1000.0)
    # short 10 at 100, marked at 250: 2000 - 2500 < 0, so closed at that close; nothing opens after
    assert len(r.trades) == 1
    t = r.trades.iloc[0]
    assert (t.ExitBar, t.ExitPrice, t.ExitReason) == (1, 250, "ruin")
    assert t.PnL == pytest.approx(-1500)  # the loss beyond the equity stays in the trade
    assert r.equity.tolist() == [1000, 0, 0, 0, 0]
    assert r.stats["Max. Drawdown [%]"] == -100 and r.stats["Equity Final"] == 0


def test_a_gap_that_closes_a_trade_below_zero_ruins_and_opens_nothing():
    df = candles([100, 100, 100, 300, 300], [100, 100, 150, 300, 300])
    r = backtest(df, [-1, -1, 1, 1, 0], fee=0.0, slippage_bps=0.0, size=1.0, cash=1000.0)
    # marked at 150 the short still has 500; it is bought back at the open of 300: cash -1000, no long
    assert r.trades[["ExitBar", "ExitPrice", "PnL"]].values.tolist() == [[3, 300, -2000]]
    assert r.trades.ExitReason.tolist() == ["target"]
    assert r.equity.tolist() == [1000, 1000, 500, 0, 0]


def test_a_close_out_at_the_end_that_leaves_nothing_shows_zero():
    df = candles([100, 100, 199], [100, 150, 199])
    r = backtest(df, [-1, -1, -1], fee=0.01, slippage_bps=0.0, size=1.0, cash=1000.0)
    qty = -1000 / 101
    cash = 1000 - qty * 100 * 0.99
    assert cash + qty * 199 > 0  # marked at the last close it still has equity, the exit fee takes it
    assert r.equity.tolist() == pytest.approx([1000, cash + qty * 150, 0])
    assert r.trades.ExitReason.tolist() == ["end"]
    assert r.trades.PnL.iloc[0] == pytest.approx(cash + qty * 199 * 1.01 - 1000)


def test_no_trades():
    r = backtest(candles([1, 2, 3], [2, 3, 4]), [0, 0, 0], **COSTS)
    assert r.equity.tolist() == [1000] * 3 and len(r.trades) == 0
    assert r.stats["# Trades"] == 0 and r.stats["Exposure Time [%]"] == 0


price_paths = st.lists(st.floats(0.6, 1.7), min_size=2, max_size=80)  # wide enough to ruin shorts


@settings(max_examples=200, deadline=None)
@given(price_paths, st.data(), st.floats(0, 0.01), st.floats(0, 50), st.floats(0.05, 1))
def test_engine_equals_reference_loop(steps, data, fee, slippage_bps, size):
    n = len(steps)
    close = 100 * np.cumprod(steps)
    open_ = close * np.array(data.draw(st.lists(st.floats(0.7, 1.4), min_size=n, max_size=n)))
    target = np.array(data.draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=n, max_size=n)))
    kw = {"fee": fee, "slippage_bps": slippage_bps, "size": size, "cash": 1000.0}
    r = backtest(candles(open_, close), target, **kw)
    equity, trades = reference_loop(open_, close, target, **kw)
    np.testing.assert_allclose(r.equity.to_numpy(), equity, rtol=1e-9, atol=1e-9)
    expected = pd.DataFrame(trades, columns=["EntryBar", "Size", "EntryPrice", "ExitBar", "ExitPrice",
                                             "Fees", "PnL", "ExitReason"])
    assert len(r.trades) == len(expected)
    assert r.trades["ExitReason"].tolist() == expected["ExitReason"].tolist()
    if len(expected):
        numbers = expected.columns[:-1]
        np.testing.assert_allclose(r.trades[numbers].to_numpy(float), expected[numbers].to_numpy(float),
                                   rtol=1e-9, atol=1e-9)
        if equity[-1] > 0:  # every unit of PnL belongs to a trade, but for the debt a ruin forgives
            assert r.trades["PnL"].sum() == pytest.approx(equity[-1] - 1000)


@settings(max_examples=100, deadline=None)
@given(price_paths, st.data(), st.floats(1e-5, 0.01), st.floats(0, 50))
def test_fees_and_slippage_only_ever_lower_the_result(steps, data, fee, slippage_bps):
    close = 100 * np.cumprod(steps)
    target = np.array(data.draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=len(close),
                                         max_size=len(close))))
    df = candles(np.roll(close, 1), close)
    free = backtest(df, target, fee=0.0, slippage_bps=0.0, size=0.5)
    costly = backtest(df, target, fee=fee, slippage_bps=slippage_bps, size=0.5)
    # Unless the free account is ruined: a position sized net of fees is smaller, and a smaller short
    # can survive a move that ruins a larger one.
    if free.equity.min() > 0:
        assert costly.equity.iloc[-1] <= free.equity.iloc[-1] + 1e-12
        if len(costly.trades):
            assert costly.equity.iloc[-1] < free.equity.iloc[-1]


def test_a_position_decided_at_t_only_uses_prices_from_the_open_of_t_plus_1():
    df = load_sample("ETH/BTC").iloc[:300]
    t, exit_decision = 100, 140
    target = np.zeros(len(df), dtype=int)
    target[t:exit_decision] = 1
    base = backtest(df, target, **COSTS)
    noisy = df.copy()
    rng = np.random.default_rng(0)
    before = noisy.index <= noisy.index[t]  # everything up to and including the close of t
    after = noisy.index > noisy.index[exit_decision + 1]  # everything after the exit fill's candle
    for col in ["open", "high", "low", "close"]:
        noisy.loc[before | after, col] *= rng.uniform(0.5, 1.5, (before | after).sum())
    moved = backtest(noisy, target, **COSTS)
    cols = ["EntryBar", "ExitBar", "EntryPrice", "ExitPrice", "Size", "PnL", "Fees"]
    pd.testing.assert_frame_equal(base.trades[cols], moved.trades[cols])
    assert base.trades.EntryPrice.iloc[0] == df.open.iloc[t + 1]
    # and the open of t+1 does move it
    noisy.iloc[t + 1, noisy.columns.get_loc("open")] *= 1.01
    assert backtest(noisy, target, **COSTS).trades.EntryPrice.iloc[0] != base.trades.EntryPrice.iloc[0]


STAT_KEYS = [
    "Start", "End", "Duration", "Exposure Time [%]", "Equity Final", "Equity Peak", "Return [%]",
    "Buy & Hold Return [%]", "Return (Ann.) [%]", "Volatility (Ann.) [%]", "CAGR [%]", "Sharpe Ratio",
    "Sortino Ratio", "Calmar Ratio", "Alpha [%]", "Beta", "Max. Drawdown [%]", "Avg. Drawdown [%]",
    "Max. Drawdown Duration", "Avg. Drawdown Duration", "# Trades", "Win Rate [%]", "Best Trade [%]",
    "Worst Trade [%]", "Avg. Trade [%]", "Max. Trade Duration", "Avg. Trade Duration", "Profit Factor",
    "Expectancy [%]", "SQN", "Kelly Criterion", "Fees Paid", "Turnover [x]", "Fees / Gross PnL [%]",
]


def test_stats_on_a_hand_made_curve():
    # daily: up 10 %, down to 99 (a 10 % drawdown lasting 2 days), back up to a new high
    df = candles([100, 100, 110, 99, 121], [100, 110, 99, 121, 121], freq="1D")
    r = backtest(df, [1, 1, 1, 0, 0], fee=0.0, slippage_bps=0.0, size=1.0, cash=100.0)
    s = r.stats
    assert list(s.index) == STAT_KEYS
    assert r.equity.tolist() == pytest.approx([100, 110, 99, 121, 121])
    assert s["Max. Drawdown [%]"] == pytest.approx(-10)
    assert s["Avg. Drawdown [%]"] == pytest.approx(-10)
    assert s["Max. Drawdown Duration"] == pd.Timedelta("2D")
    assert s["Exposure Time [%]"] == 80  # held in candles 1-3, closed at the open of 4
    # backtesting.py's definitions: the mean growth of the four daily returns, a year of 252 days
    # (these five candles, Monday to Friday, hold no weekend day), the variance compounded over the
    # year, CAGR spreading the return over Duration / 365.25 days
    returns = np.array([0.1, -0.1, 121 / 99 - 1, 0])
    g = 1.21 ** (1 / 4)
    assert s["Return (Ann.) [%]"] == pytest.approx((g ** 252 - 1) * 100)
    vol = np.sqrt((returns.var(ddof=1) + g ** 2) ** 252 - g ** (2 * 252))
    assert s["Volatility (Ann.) [%]"] == pytest.approx(vol * 100)
    assert s["Sharpe Ratio"] == pytest.approx(s["Return (Ann.) [%]"] / s["Volatility (Ann.) [%]"])
    downside = np.sqrt(np.mean(np.minimum(returns, 0) ** 2) * 252)
    assert s["Sortino Ratio"] == pytest.approx((g ** 252 - 1) / downside)
    assert s["Calmar Ratio"] == pytest.approx(s["Return (Ann.) [%]"] / 10)
    assert s["CAGR [%]"] == pytest.approx((1.21 ** (365.25 / 4) - 1) * 100)
    assert s["Duration"] == pd.Timedelta("4D")


def test_backtest_predictions_on_two_sample_symbols():
    data = {s: load_sample(s).iloc[:600] for s in ["ETH/BTC", "LTC/BTC"]}
    rows = []
    for symbol, df in data.items():
        # a causal toy model: P(up) from the last candle's return
        ret = df.close.pct_change().fillna(0).to_numpy()
        p_up = 1 / (1 + np.exp(-ret * 500))
        rows.append(pd.DataFrame({"time": df.index[20:-5], "symbol": symbol, "p_down": 1 - p_up[20:-5],
                                  "p_up": p_up[20:-5], "label": 0}))
    preds = pd.concat(rows, ignore_index=True)
    kw = {"threshold_up": 0.55, "threshold_down": 0.55, "long_only": False, "min_hold": 2, "fee": 0.001,
              "slippage_bps": 2.0, "size": 1.0, "cash": 2.0}
    results = backtest_predictions(preds, data, **kw)
    assert list(results) == ["ETH/BTC", "LTC/BTC", "portfolio"]
    eth, ltc, total = results.values()
    assert eth.equity.index[0] == data["ETH/BTC"].index[20] and len(eth.equity) == 600 - 20 - 5 + 1
    assert eth.equity.iloc[0] == 1.0 and total.equity.iloc[0] == 2.0
    assert total.equity.iloc[-1] == pytest.approx(eth.equity.iloc[-1] + ltc.equity.iloc[-1])
    assert total.stats["# Trades"] == eth.stats["# Trades"] + ltc.stats["# Trades"] > 0
    assert total.stats["Fees Paid"] == pytest.approx(eth.stats["Fees Paid"] + ltc.stats["Fees Paid"])
    # long_only never shorts
    longs = backtest_predictions(preds, data, **{**kw, "long_only": True})
    assert (longs["portfolio"].trades.Side == 1).all()
    with pytest.raises(BotterError, match="not candle open times"):
        backtest_predictions(preds.assign(time=preds.time + pd.Timedelta("1min")), data, **kw)


@pytest.mark.parametrize("kw,match", [({"fee": -0.1}, "fee"), ({"size": 1.5}, "size"),
                                      ({"slippage_bps": -1}, "slippage"), ({"slippage_bps": 10_000}, "would make a fill price zero"),
                                      ({"cash": 0}, "cash")])
def test_bad_costs_raise(kw, match):
    with pytest.raises(BotterError, match=match):
        backtest(candles([1, 2], [1, 2]), [0, 0], **{**COSTS, **kw})


def test_bad_target_raises():
    with pytest.raises(BotterError, match="-1, 0 or 1"):
        backtest(candles([1, 2], [1, 2]), [0.5, 0], **COSTS)
    with pytest.raises(BotterError, match="one target position per candle"):
        backtest(candles([1, 2], [1, 2]), [0], **COSTS)


def toy_run(run_dir, symbols=("ETH/BTC", "LTC/BTC"), first=4800):
    """A finished run folder (botter.runs) with toy predictions from candle `first` on, fitted on
    the candles before them, and an untrained model."""
    import torch
    from omegaconf import OmegaConf

    from botter import runs
    from botter.config import compose
    from botter.model import build_model

    c = OmegaConf.to_container(compose("train", ["data.symbols=[" + ",".join(symbols) + "]"]), resolve=True)
    runs.start(run_dir, c)
    rows, periods = [], {}
    for symbol in symbols:
        df = load_sample(symbol)
        p_up = 1 / (1 + np.exp(-df.close.pct_change(3).fillna(0).to_numpy() * 300))[first:-5]
        rows.append(pd.DataFrame({"time": df.index[first:-5].as_unit("ns"), "symbol": symbol,
                                  "p_down": 1 - p_up, "p_up": p_up, "label": 0}))
        t = [str(df.index[i]) for i in (40, first - 300, first - 300, first, first, len(df) - 6)]
        periods[symbol] = {"train": t[:2], "val": t[2:4], "test": t[4:]}
    kwargs = {**c["model"], "input_hw": [c["render"]["height"], c["render"]["width"]]}
    torch.manual_seed(0)
    info = {"render": c["render"], "timeframe": "5m", "window": 20, "horizon": 5, "classes": 2, "hours": None}
    runs.save_model(run_dir, state_dicts=[build_model(**kwargs).state_dict()], model_kwargs=kwargs, info=info)
    runs.finish(run_dir, predictions=pd.concat(rows, ignore_index=True), metrics={}, symbols=list(symbols),
                timeframe="5m", hours=None, periods=periods)
    return c


def test_cli_backtests_a_run_folder_into_its_own_report(tmp_path, capsys):
    import json

    from botter.cli.backtest import backtest as _backtest
    from botter.config import compose

    toy_run(tmp_path)
    cfg = compose("backtest", [f"run_dir={tmp_path}", "backtest.min_hold=3", "period.start=2018-01-28",
                               "plot.start=2018-01-29 00:00", "plot.end=2018-01-29 04:00", "name=first"])
    results = _backtest(cfg)
    out = tmp_path / "backtests" / "first"
    names = ["backtest.json", "settings.json", "trades.csv", "equity.png", "trades_ETH-BTC.png",
             "trades_ETH-BTC_zoom.png", "trades_LTC-BTC.png", "trades_LTC-BTC_zoom.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    # The settings the backtests of one run differ by, beside their statistics.
    settings = json.loads((out / "settings.json").read_text())
    assert settings["min_hold"] == 3 and settings["fee"] == 0.001 and settings["sample"] == "out-of-sample"
    stats = json.loads((out / "backtest.json").read_text())
    assert list(stats) == ["ETH/BTC", "LTC/BTC", "portfolio"]
    assert list(stats["portfolio"]) == ["Sample", *STAT_KEYS] and stats["portfolio"]["Sample"] == "out-of-sample"
    assert stats["portfolio"]["Start"] == "2018-01-28 00:00:00+00:00"
    assert stats["portfolio"]["# Trades"] == len(pd.read_csv(out / "trades.csv")) > 0
    assert stats["ETH/BTC"]["Equity Final"] == pytest.approx(results["ETH/BTC"].equity.iloc[-1])
    printed = capsys.readouterr().out
    assert "Sharpe Ratio" in printed and "portfolio" in printed
    # Another backtest never overwrites one: it needs its own name.
    with pytest.raises(BotterError, match="exists: give this backtest another name"):
        _backtest(cfg)
    assert not (tmp_path / "backtest").exists()  # the training report's folder is not touched


def test_in_sample_backtests_are_refused_unless_asked_and_then_marked(tmp_path, capsys):
    from botter.cli.backtest import backtest as _backtest
    from botter.config import compose

    toy_run(tmp_path)
    args = [f"run_dir={tmp_path}", "data=sample", "data.symbols=[ETH/BTC]", "data.start=2018-01-20"]
    with pytest.raises(BotterError, match="would be in-sample: ETH/BTC .* starts before the end of the training period"):
        _backtest(compose("backtest", [*args, "name=refused"]))
    assert not (tmp_path / "backtests" / "refused").exists()
    _backtest(compose("backtest", [*args, "name=asked", "allow_in_sample=true"]))
    out = tmp_path / "backtests" / "asked"
    assert "IN-SAMPLE backtest" in capsys.readouterr().out
    assert json.loads((out / "backtest.json").read_text())["portfolio"]["Sample"] == "IN-SAMPLE"
    assert (pd.read_csv(out / "trades.csv")["Sample"] == "IN-SAMPLE").all()
    # Another symbol over the same period was never fitted: out of sample.
    _backtest(compose("backtest", [f"run_dir={tmp_path}", "data=sample", "data.symbols=[XMR/BTC]",
                                   "data.start=2018-01-20", "name=xmr"]))


@pytest.mark.slow
def test_cli_runs_the_model_on_other_candles(tmp_path):
    from botter.cli.backtest import backtest as _backtest
    from botter.config import compose

    toy_run(tmp_path)
    cfg = compose("backtest", [f"run_dir={tmp_path}", f"out_dir={tmp_path / 'xmr'}", "data=store",
                               f"paths.data_dir={tmp_path / 'store'}", "data.source=sample", "data.symbols=[XMR/BTC]",
                               "data.start=2018-01-29", "backtest.threshold_up=0.5", "backtest.threshold_down=0.5"])
    results = _backtest(cfg)  # data=store's 1h timeframe gives way to the model's 5m
    assert list(results) == ["XMR/BTC", "portfolio"]
    # The first decision needs window + ma - 1 candles; every candle after it is decided on, the
    # last one too (nothing after a decision is needed to make it), and the one after fills it.
    xmr = load_sample("XMR/BTC").loc["2018-01-29":]
    assert results["XMR/BTC"].equity.index[0] == xmr.index[20 + 20 - 2]
    assert results["XMR/BTC"].equity.index[-1] == xmr.index[-1]
    assert (tmp_path / "xmr" / "trades_XMR-BTC.png").exists()
    with pytest.raises(BotterError, match="reads 5m candles, data.timeframe is 1h"):
        _backtest_with_hydra(["data=sample", "data.timeframe=1h"], tmp_path)


def _backtest_with_hydra(overrides, run_dir):
    """botter-backtest as a console script would run it (the overrides given on its command line)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "from botter.cli.backtest import main; main()", f"run_dir={run_dir}",
                           *overrides], capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    raise BotterError(proc.stderr)


def test_cli_bad_run_dir(tmp_path):
    from botter.cli.backtest import backtest as _backtest
    from botter.config import compose

    with pytest.raises(BotterError, match="not a run folder"):
        _backtest(compose("backtest", [f"run_dir={tmp_path}"]))


@pytest.mark.parametrize("name", ["../../x", "/tmp/elsewhere", "a/b", "..", ""])
def test_a_backtest_name_stays_inside_the_runs_backtests_folder(tmp_path, name):
    from botter.cli.backtest import backtest as _backtest
    from botter.config import compose

    toy_run(tmp_path / "run")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(BotterError, match=rf"name='{re.escape(name)}' must be a plain folder name .*/backtests/<name>/"):
        _backtest(compose("backtest", [f"run_dir={tmp_path / 'run'}", f"name='{name}'"]))
    assert sorted(tmp_path.rglob("*")) == before
