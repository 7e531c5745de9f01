"""The statistics against backtesting.py itself: its Backtest on the same target positions, every shared
figure and every trade; its compute_stats where its Backtest cannot follow (a portfolio, a curve made
by hand); and the headline cases by hand."""

import warnings

import numpy as np
import pandas as pd
import pytest
from backtesting import Backtest, Strategy
from backtesting.lib import compute_stats as backtesting_compute_stats

from botter.backtest import backtest, backtest_predictions
from botter.data import load_sample
from botter.stats import compute_stats

# backtesting.py 0.6 calls pandas APIs that pandas 3 deprecates: its warnings, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:backtesting")

# Botter's names for backtesting.py's figures where they differ (equity is in quote currency, not $).
RENAMED = {"Equity Final": "Equity Final [$]", "Equity Peak": "Equity Peak [$]", "Fees Paid": "Commissions [$]"}
OWN = ["Turnover [x]", "Fees / Gross PnL [%]"]  # botter's own figures, not in backtesting.py
# backtesting.py buys whole units: with this cash every position here is more than 1e9 units (the
# shipped BTC prices are below 0.11), so rounding a quantity down moves it by less than 1e-9 of itself.
# That error adds up over at most ~100 trades per case, and every figure is a smooth function of the
# equity and the trades: 1e-6 relative bounds it with room (the largest difference measured over these
# cases is 4e-10) and still catches any real difference (a fee, a candle, a day or a formula off gives
# 1e-4 or more).
CASH = 1e9
RTOL = 1e-6


def backtesting_py(candles: pd.DataFrame, target, *, fee: float, size: float) -> pd.Series:
    """backtesting.py's Backtest.run on `candles`, moving to target[i] at the open after candle i like
    botter (exclusive positions; the last candle's target is never filled; the last open closes what
    is still open, finalize_trades)."""
    # backtesting.py reads a size of 1 as one unit; a fraction just under 1 buys all it can.
    fraction = min(size, 1 - 1e-12)

    class Targets(Strategy):
        def init(self):
            pass

        def next(self):
            i = len(self.data) - 1
            want, have = target[i], np.sign(self.position.size)
            if i == len(target) - 1 or want == have:
                return
            if have:
                self.position.close()
            if want:
                (self.buy if want > 0 else self.sell)(size=fraction)

    data = candles.rename(columns=str.capitalize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # orders it cancels once the money is gone, its progress bar
        return Backtest(data, Targets, cash=CASH, commission=fee, finalize_trades=True).run()


def flat_last(candles: pd.DataFrame) -> pd.DataFrame:
    """The candles with the last one flat at the close before it: backtesting.py closes a position
    still open at the last candle's OPEN, botter at its CLOSE; on this candle both are the same price."""
    out = candles.copy()
    out.iloc[-1, [out.columns.get_loc(c) for c in ("open", "high", "low", "close")]] = out["close"].iloc[-2]
    return out


def blocks(n: int, seed: int, *, long_only: bool = False) -> np.ndarray:
    """Targets held for 3 to 40 candles at a time; flat on the first candle (backtesting.py starts
    deciding at the second)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 41, n)
    target = np.repeat(rng.integers(0 if long_only else -1, 2, n), lengths)[:n]
    target[0] = 0
    return target


def hourly(symbol: str = "ETH/BTC") -> pd.DataFrame:
    df = load_sample(symbol)
    return df.resample("1h").agg({"open": "first", "high": "max", "low": "min", "close": "last",
                                  "volume": "sum"}).dropna()


def on_business_days(df: pd.DataFrame) -> pd.DataFrame:
    """Real price moves on a market that closes at weekends: the candles one per weekday."""
    index = pd.bdate_range("2016-01-04", periods=len(df), tz="UTC", name="time")
    return df.set_axis(index)


def moved(df: pd.DataFrame, at: int, over: int, factor: float = 3.0) -> pd.DataFrame:
    """Prices multiplied by a factor rising from 1 to `factor` over `over` candles from candle `at`
    on; over=0: a gap, the price jumps at the open of `at`."""
    i = np.arange(len(df))
    scale = np.interp(i, [at - 1, at + over], [1, factor]) if over else np.where(i >= at, factor, 1.0)
    return df.assign(**{c: df[c] * scale for c in ("open", "high", "low", "close")})


def short_from_40(n: int, seed: int, *, until: int = 150, then: int | None = None) -> np.ndarray:
    """Random targets, but short from candle 40 until `until` (then `then` at `until`)."""
    target = blocks(n, seed)
    target[40:until] = -1
    if then is not None:
        target[until] = then
    return target


# The first case runs at the shipped fee and size (configs/backtest). Slippage is 0 throughout:
# backtesting.py's `spread` is another model (it moves the entry price only, not the exit).
CASES = {
    "5m long/short, size 1": (lambda: load_sample("ETH/BTC"), lambda n: blocks(n, 1), 0.001, 1.0),
    "5m long-only, size 0.5": (lambda: load_sample("LTC/BTC"), lambda n: blocks(n, 2, long_only=True), 0.002, 0.5),
    "1h long/short, size 1": (hourly, lambda n: blocks(n, 3), 0.001, 1.0),
    "1h long-only, no fee": (lambda: hourly("XMR/BTC"), lambda n: blocks(n, 4, long_only=True), 0.0, 1.0),
    "1d weekdays long/short": (lambda: on_business_days(hourly()), lambda n: blocks(n, 5), 0.001, 1.0),
    "1d weekdays long-only": (lambda: on_business_days(hourly("LTC/BTC")), lambda n: blocks(n, 6, long_only=True),
                              0.001, 0.8),
    # A short at size 1 is ruined when the price doubles, marked at a close inside the trade.
    "1h short ruined as the price triples": (lambda: moved(hourly(), 100, 30), lambda n: short_from_40(n, 7),
                                             0.001, 1.0),
    # At size 0.4 it takes more than 3.5x: a gap to 4x at the open where the target flips to long
    # closes the short below zero, so the long never opens.
    "1h short at size 0.4 ruined by a gap to 4x": (lambda: moved(hourly(), 120, 0, 4.0),
                                                   lambda n: short_from_40(n, 8, until=119, then=1), 0.001, 0.4),
    "1d weekdays short ruined as the price triples": (lambda: on_business_days(moved(hourly(), 60, 10)),
                                                      lambda n: short_from_40(n, 9), 0.0, 1.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_figure_and_trade_equals_backtesting_py(case):
    make, targets, fee, size = CASES[case]
    candles = flat_last(make())
    target = targets(len(candles))
    ours = backtest(candles, target, fee=fee, slippage_bps=0.0, size=size, cash=CASH)
    theirs = backtesting_py(candles, target, fee=fee, size=size)

    np.testing.assert_allclose(ours.equity.to_numpy(), theirs["_equity_curve"]["Equity"].to_numpy(), rtol=RTOL)

    t, b = ours.trades, theirs["_trades"]
    assert len(t) == len(b) >= 1
    for col in ("EntryBar", "ExitBar", "EntryTime", "ExitTime", "Duration"):
        assert t[col].tolist() == b[col].tolist(), col
    for ours_col, theirs_col, scale in (("Size", "Size", 1), ("EntryPrice", "EntryPrice", 1),
                                        ("ExitPrice", "ExitPrice", 1), ("PnL", "PnL", 1),
                                        ("Fees", "Commission", 1), ("Return [%]", "ReturnPct", 100)):
        np.testing.assert_allclose(t[ours_col].astype(float), b[theirs_col].astype(float) * scale, rtol=RTOL,
                                   atol=1e-9, err_msg=ours_col)

    shared = [k for k in ours.stats.index if k not in OWN]
    names = [RENAMED.get(k, k) for k in shared]
    figures = [k for k in theirs.index if not k.startswith("_")]
    assert sorted(set(names) | {"Commissions [$]"}) == sorted(set(figures) | {"Commissions [$]"})  # all of them
    for ours_key, theirs_key in zip(shared, names):
        if theirs_key == "Commissions [$]" and not fee:
            continue  # backtesting.py leaves it out when there were none
        assert_same_figure(ours.stats[ours_key], theirs[theirs_key], ours_key)


def assert_same_figure(ours, theirs, name):
    if isinstance(theirs, (pd.Timestamp, pd.Timedelta)) or theirs is pd.NaT:
        assert ours == theirs or (ours is pd.NaT and theirs is pd.NaT), f"{name}: {ours} != {theirs}"
    else:
        np.testing.assert_allclose(float(ours), float(theirs), rtol=RTOL, atol=1e-9, err_msg=name)


def test_ruin_cases_do_ruin():
    """The ruin cases above are what they say: ruined, nothing traded after, equity 0 from there."""
    for case in [c for c in CASES if "ruined" in c]:
        make, targets, fee, size = CASES[case]
        candles = flat_last(make())
        r = backtest(candles, targets(len(candles)), fee=fee, slippage_bps=0.0, size=size, cash=CASH)
        last = r.trades.iloc[-1]
        assert r.equity.iloc[-1] == 0 and r.equity.iloc[last.ExitBar - 1] > 0, case
        assert (r.equity.iloc[last.ExitBar:] == 0).all()
        assert last.Side == -1 and last.PnL < -r.equity.iloc[last.EntryBar - 1], case


def test_a_three_day_five_minute_rise_of_ten_percent_has_a_modest_sharpe():
    """The curve that annualised per candle got a Sharpe of ~70,000: by daily returns it is ~1.7."""
    index = pd.date_range("2024-01-01", periods=3 * 288, freq="5min", tz="UTC")
    rng = np.random.default_rng(0)
    steps = rng.normal(0, 0.002, len(index))
    equity = pd.Series(100 * np.exp(np.cumsum(steps - steps.mean() + np.log(1.1) / len(index))), index=index)
    equity.iloc[0] = 100.0
    trades = no_trades(index)
    ours = compute_stats(equity, trades, equity)
    theirs = backtesting_compute_stats(stats=backtesting_stats(equity, trades), data=pd.DataFrame({"Close": equity}))
    assert ours["Return [%]"] == pytest.approx(equity.iloc[-1] - 100)
    for key in ("Return (Ann.) [%]", "Volatility (Ann.) [%]", "Sharpe Ratio", "Sortino Ratio", "CAGR [%]"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-9), key
    assert 0.5 < ours["Sharpe Ratio"] < 5


def no_trades(index: pd.DatetimeIndex) -> pd.DataFrame:
    none = index[:0]
    return pd.DataFrame({"EntryTime": none, "ExitTime": none, "Duration": none - none,
                         **{c: np.array([]) for c in ("Size", "EntryPrice", "ExitPrice", "Fees", "PnL", "Return [%]")}})


def backtesting_stats(equity: pd.Series, trades: pd.DataFrame) -> pd.Series:
    """What backtesting.lib.compute_stats reads from a finished run, made from botter's equity and trades."""
    index = equity.index
    b = pd.DataFrame({"EntryBar": index.get_indexer(trades["EntryTime"]),
                      "ExitBar": index.get_indexer(trades["ExitTime"]), "PnL": trades["PnL"],
                      "ReturnPct": trades["Return [%]"] / 100, "Duration": trades["Duration"]})
    return pd.Series({"_equity_curve": pd.DataFrame({"Equity": equity}), "_trades": b, "_strategy": None})


def test_portfolio_figures_by_backtesting_pys_definitions():
    data = {s: load_sample(s).iloc[:3000] for s in ["ETH/BTC", "LTC/BTC"]}
    rows = []
    for symbol, df in data.items():
        # a toy that bets on a reversal of the last 15 minutes: a small edge before costs
        p_up = 1 / (1 + np.exp(df.close.pct_change(3).fillna(0).to_numpy() * 300))
        rows.append(pd.DataFrame({"time": df.index[100:-5], "symbol": symbol, "p_down": 1 - p_up[100:-5],
                                  "p_up": p_up[100:-5]}))
    results = backtest_predictions(pd.concat(rows, ignore_index=True), data, threshold_up=0.55,
                                   threshold_down=0.55, long_only=False, min_hold=3, fee=0.001, slippage_bps=2.0,
                                   size=1.0, cash=2.0)
    total = results["portfolio"]
    assert len(total.trades) > 20
    theirs = backtesting_compute_stats(stats=backtesting_stats(total.equity, total.trades),
                                       data=pd.DataFrame({"Close": total.buy_hold}))
    for key in total.stats.index:
        if key not in OWN and key != "Fees Paid":
            assert_same_figure(total.stats[key], theirs[RENAMED.get(key, key)], key)
    # botter's own figures, over the trades of both symbols: the fees ate the edge many times over
    trades = total.trades
    notional = (trades.Size.abs() * (trades.EntryPrice + trades.ExitPrice)).sum()
    assert total.stats["Turnover [x]"] == pytest.approx(notional / total.equity.mean())
    gross = trades.PnL.sum() + trades.Fees.sum()
    assert gross > 0 and total.stats["Fees / Gross PnL [%]"] == pytest.approx(100 * trades.Fees.sum() / gross)
    assert total.stats["Fees / Gross PnL [%]"] > 100 and total.stats["Return [%]"] < 0


@pytest.mark.parametrize("freq,weekdays_only,per_year", [("1h", False, 365), ("1D", False, 365), ("1D", True, 252)])
def test_a_year_is_365_days_or_252_for_a_market_that_closes(freq, weekdays_only, per_year):
    index = pd.date_range("2024-01-01", periods=400, freq=freq, tz="UTC")
    if weekdays_only:
        index = index[index.day_of_week < 5]
    equity = pd.Series(np.linspace(100, 120, len(index)), index=index)
    s = compute_stats(equity, no_trades(index), equity)
    daily = equity.resample("D").last().dropna()
    growth = (daily.iloc[-1] / daily.iloc[0]) ** (1 / (len(daily) - 1))  # the mean daily growth
    assert s["Return (Ann.) [%]"] == pytest.approx((growth ** per_year - 1) * 100)
    years = (index[-1] - index[0]) / pd.Timedelta(days=365.25)  # CAGR's year, whatever the market
    assert s["CAGR [%]"] == pytest.approx((1.2 ** (1 / years) - 1) * 100)


def test_where_no_drawdown_period_counts_the_durations_are_nat():
    """The one place botter leaves backtesting.py: a dip on the last candle alone is no drawdown period
    (none counts without a candle between peak and end), and backtesting.py then shows the depth 0.038
    as the drawdown's duration. Botter shows NaT; the depths agree."""
    index = pd.date_range("2024-01-01", periods=6, freq="1h", tz="UTC")
    equity = pd.Series([100, 101, 102, 103, 104, 100.0], index=index)
    ours = compute_stats(equity, no_trades(index), equity)
    theirs = backtesting_compute_stats(stats=backtesting_stats(equity, no_trades(index)),
                                       data=pd.DataFrame({"Close": equity}))
    assert ours["Max. Drawdown Duration"] is pd.NaT and ours["Avg. Drawdown Duration"] is pd.NaT
    assert theirs["Max. Drawdown Duration"] == pytest.approx(4 / 104)
    for key in ("Max. Drawdown [%]", "Avg. Drawdown [%]"):
        assert ours[key] == pytest.approx(theirs[key]) == pytest.approx(-400 / 104)


def test_an_exit_at_the_marked_price_is_no_drawdown():
    """Fee 0: the cash after an exit at the price the position was marked at equals that mark, but
    for the last bit; the flat stretch after it must not be a drawdown (a case found where Avg.
    Drawdown differed from backtesting.py's before the tie was settled)."""
    candles = flat_last(load_sample("ETH/BTC").loc["2018-01-15 07:35":"2018-01-25 07:50"])
    n = len(candles)
    rng = np.random.default_rng(18)
    target = np.repeat(rng.integers(-1, 2, n), rng.integers(3, 30, n))[:n]
    target[0] = 0
    ours = backtest(candles, target, fee=0.0, slippage_bps=0.0, size=1.0, cash=CASH).stats
    theirs = backtesting_py(candles, target, fee=0.0, size=1.0)
    for key in ("Avg. Drawdown [%]", "Avg. Drawdown Duration", "Max. Drawdown [%]", "Max. Drawdown Duration"):
        assert_same_figure(ours[key], theirs[key], key)
