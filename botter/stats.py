"""Backtest statistics: a pandas Series with labelled keys, as backtesting.py reports them.

Every key that backtesting.py also reports is computed by its definition (backtesting/_stats.py
compute_stats, 0.6.6), checked against backtesting.py itself in tests/test_stats.py:

- Return (Ann.), Volatility (Ann.), Sharpe, Sortino, Calmar come from the equity resampled to
  calendar days (weeks, months or years for candles that long), 252 periods a year when the candles
  leave out weekends and 365 otherwise; volatility by its compounded-variance formula; no risk-free
  rate. CAGR counts its years as Duration / 365.25 days. Alpha and Beta regress candle log returns
  on buy-and-hold's.
- Exposure Time counts every candle from a trade's entry candle to its exit candle inclusive.
  Profit Factor and Avg. Trade (a geometric mean, 0 once a trade lost 100 % or more) use the trades'
  returns, SQN and Kelly their PnL. Durations are rounded up to the unit of the candle timeframe.
- Drawdowns are negative percentages; a drawdown period runs from a peak to the next candle back at
  a peak (or to the last candle) and counts only if at least one candle lies between. Where none
  counts, backtesting.py shows a drawdown depth as its duration; botter shows NaT.

Equity Final and Equity Peak are backtesting.py's Equity Final [$] and Equity Peak [$] (in quote
currency here). Botter's own figures, names backtesting.py does not use: Fees Paid (backtesting.py
shows the same sum as Commissions [$]), Turnover [x] and Fees / Gross PnL [%] (see compute_stats).
"""

import numpy as np
import pandas as pd

# Equity within this fraction of its peak is at the peak: the cash after an exit at the price the
# position was last marked at can differ from that mark in the last bit (two ways of summing), and
# such a float tie must not open a drawdown period (backtesting.py's own arithmetic gets an exact 0).
PEAK_TOLERANCE = 1e-12


def drawdown(equity) -> np.ndarray:
    """Drawdown per candle as a fraction >= 0: 1 - equity / its running peak (0 within
    PEAK_TOLERANCE of the peak)."""
    eq = np.asarray(equity, dtype=np.float64)
    dd = 1 - eq / np.maximum.accumulate(eq)
    dd[np.abs(dd) < PEAK_TOLERANCE] = 0.0
    return dd


def max_drawdown(equity) -> float:
    """Max. Drawdown [%]: the deepest drawdown, as a negative percentage (0 without one)."""
    return -np.nan_to_num(drawdown(equity).max()) * 100


def total_return(values) -> float:
    """Return [%] of a series from its first to its last value (Return [%], Buy & Hold Return [%])."""
    v = np.asarray(values, dtype=np.float64)
    return (v[-1] - v[0]) / v[0] * 100


def compute_stats(equity: pd.Series, trades: pd.DataFrame, buy_hold: pd.Series) -> pd.Series:
    """Statistics of one equity curve and its trades.

    equity: equity per candle (quote currency), marked at the close, indexed by candle open time;
    the first value is the starting cash. trades: botter.backtest.TRADE_COLUMNS rows (ExitTime is
    the open time of the candle the trade was closed in). buy_hold: the buy-and-hold equity on the
    same index (the market that Alpha, Beta and Buy & Hold Return refer to).

    Botter's own figures:
    Turnover [x]: notional traded (entries and exits, |Size| x fill price) over the mean equity: about
        2 for one round trip of the whole account; multiply by the fee to get the fees as a share of equity.
    Fees / Gross PnL [%]: Fees Paid over the trades' PnL before fees, in percent: how much of the edge
        costs ate (over 100: costs turned a winning strategy into a losing one). NaN when the trades
        lost money before fees (there was no edge to eat).
    """
    index = equity.index
    eq = equity.to_numpy(np.float64)
    period = candle_period(index)
    dd = drawdown(eq)
    dd_peaks, dd_durations = _drawdown_periods(dd, index)
    day_returns, per_year = period_returns(equity)
    ann_return, volatility = annualized(day_returns.to_numpy(), per_year)
    duration = index[-1] - index[0]
    years = (duration.days + duration.seconds / 86400) / 365.25
    final = eq[-1]
    with np.errstate(all="ignore"):  # short or ruined curves: the formulas give inf or NaN, say so
        downside = np.sqrt(np.mean(day_returns.clip(upper=0) ** 2)) * np.sqrt(per_year)
        sortino = np.float64(ann_return) / downside
        cagr = (final / eq[0]) ** (1 / years) - 1 if years else np.nan
        log_eq = np.log(eq[1:] / eq[:-1])
        bh = buy_hold.to_numpy(np.float64)
        log_bh = np.log(bh[1:] / bh[:-1])
        beta = np.nan
        if len(log_eq) > 1:
            cov = np.cov(log_eq, log_bh)
            beta = cov[0, 1] / cov[1, 1]
    ret, bh_ret, max_dd = total_return(eq), total_return(bh), np.nan_to_num(dd.max())

    pnl = trades["PnL"].astype(np.float64)
    returns = trades["Return [%]"].astype(np.float64) / 100
    durations = trades["Duration"]
    n = len(trades)
    win_rate = (pnl > 0).mean() if n else np.nan
    fees = trades["Fees"].sum()
    gross = pnl.sum() + fees
    notional = (trades["Size"].abs() * (trades["EntryPrice"] + trades["ExitPrice"])).sum()
    resolution = period.resolution_string
    s = {
        "Start": index[0],
        "End": index[-1],
        "Duration": duration,
        "Exposure Time [%]": _exposed(index, trades).mean() * 100,
        "Equity Final": final,
        "Equity Peak": eq.max(),
        "Return [%]": ret,
        "Buy & Hold Return [%]": bh_ret,
        "Return (Ann.) [%]": ann_return * 100,
        "Volatility (Ann.) [%]": volatility * 100,
        "CAGR [%]": cagr * 100,
        "Sharpe Ratio": sharpe_ratio(ann_return, volatility),
        "Sortino Ratio": sortino,
        "Calmar Ratio": ann_return / (max_dd or np.nan),
        "Alpha [%]": ret - beta * bh_ret,
        "Beta": beta,
        "Max. Drawdown [%]": max_drawdown(eq),
        "Avg. Drawdown [%]": -dd_peaks.mean() * 100,
        "Max. Drawdown Duration": _ceil(dd_durations.max(), resolution),
        "Avg. Drawdown Duration": _ceil(dd_durations.mean(), resolution),
        "# Trades": n,
        "Win Rate [%]": win_rate * 100,
        "Best Trade [%]": returns.max() * 100,
        "Worst Trade [%]": returns.min() * 100,
        "Avg. Trade [%]": _geometric_mean(returns) * 100,
        "Max. Trade Duration": _ceil(durations.max(), resolution),
        "Avg. Trade Duration": _ceil(durations.mean(), resolution),
        "Profit Factor": returns[returns > 0].sum() / (abs(returns[returns < 0].sum()) or np.nan),
        "Expectancy [%]": returns.mean() * 100,
        "SQN": np.sqrt(n) * pnl.mean() / (pnl.std() or np.nan),
        "Kelly Criterion": win_rate - (1 - win_rate) / (pnl[pnl > 0].mean() / -pnl[pnl < 0].mean()),
        "Fees Paid": fees,
        "Turnover [x]": notional / eq.mean(),
        "Fees / Gross PnL [%]": fees / gross * 100 if gross > 0 else np.nan,
    }
    return pd.Series(s, dtype=object)


def candle_period(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The candle timeframe, as backtesting.py infers it: the median spacing of the last 100 times."""
    return pd.Series(index[-100:]).diff().dropna().median()


def period_returns(equity):
    """(returns, per_year): the returns of the equity resampled to days (weeks, months, years for
    candles that long) and how many such periods make a year: 252 days when the candles leave out
    weekends, else 365. equity: a Series, or a DataFrame of curves on one index (one column each;
    a curve at 0 after a ruin has NaN returns there, left out of `annualized` like dropped ones)."""
    index = equity.index
    days = candle_period(index).days
    weekends = index.day_of_week.to_series().between(5, 6).mean() > 2 / 7 * 0.6
    per_year = {7: 52, 31: 12, 365: 1}.get(days, 365 if weekends else 252)
    freq = {7: "W", 31: "ME", 365: "YE"}.get(days, "D")
    return equity.resample(freq).last().dropna(how="all").pct_change().dropna(how="all"), per_year


def annualized(returns, per_year: int) -> tuple:
    """(Return (Ann.), Volatility (Ann.)) as fractions, from `period_returns`' returns along the last
    axis (one curve per row; NaN returns left out): the compounded geometric mean, and volatility by
    backtesting.py's compounded-variance formula."""
    r = np.asarray(returns, dtype=np.float64)
    g = _geometric_mean(r)
    n = (~np.isnan(r)).sum(-1)
    with np.errstate(all="ignore"):  # short or ruined curves: inf or NaN, as backtesting.py gives
        var = np.nansum((r - np.nansum(r, -1, keepdims=True) / n[..., None]) ** 2, -1) / (n - 1)
        ann = (1 + g) ** per_year - 1
        return ann, np.sqrt((var + (1 + g) ** 2) ** per_year - (1 + g) ** (2 * per_year))


def sharpe_ratio(ann_return, volatility):
    """Sharpe Ratio: Return (Ann.) / Volatility (Ann.), risk-free rate 0; NaN where the volatility is 0
    (arrays element-wise)."""
    with np.errstate(all="ignore"):
        return np.where(volatility == 0, np.nan, ann_return / np.where(volatility == 0, 1, volatility))[()]


def _geometric_mean(returns):
    """Mean compounded return along the last axis; a missing return counts as 0, and any return of
    -100 % or worse gives 0."""
    r = np.asarray(returns, dtype=np.float64)
    growth = np.where(np.isnan(r), 0, r) + 1
    with np.errstate(all="ignore"):
        g = np.exp(np.log(growth).sum(-1) / (growth.shape[-1] or np.nan)) - 1
    return np.where((growth <= 0).any(-1), 0.0, g)[()]


def _exposed(index: pd.DatetimeIndex, trades: pd.DataFrame) -> np.ndarray:
    """Bool per candle: some trade was open in it, from its entry candle to its exit candle inclusive."""
    n = len(index)
    opened = np.bincount(index.searchsorted(pd.DatetimeIndex(trades["EntryTime"]), side="left"), minlength=n + 1)
    closed = np.bincount(index.searchsorted(pd.DatetimeIndex(trades["ExitTime"]), side="right"), minlength=n + 1)
    return np.cumsum(opened - closed)[:-1] > 0


def _drawdown_periods(dd: np.ndarray, index: pd.DatetimeIndex) -> tuple[pd.Series, pd.Series]:
    """Depth (fraction) and duration of each drawdown period: from a candle at a peak to the next one
    (or to the last candle), when at least one candle lies between them."""
    ends = np.unique(np.append(np.flatnonzero(dd == 0), len(dd) - 1))
    start, stop = ends[:-1], ends[1:]
    keep = stop > start + 1
    start, stop = start[keep], stop[keep]
    if not len(start):
        # backtesting.py then reports the mean of the non-zero drawdowns; no period, no duration
        return pd.Series(dd[dd > 0]), pd.Series(dtype="timedelta64[ns]")
    # max over dd[start:stop + 1]: reduceat over interleaved bounds, every other segment
    bounds = np.ravel(np.column_stack([start, stop + 1]))
    depth = np.maximum.reduceat(np.append(dd, 0), bounds)[::2]
    return pd.Series(depth), pd.Series(index[stop] - index[start])


def _ceil(value, resolution: str):
    """A duration rounded up to `resolution` (the unit of the candle timeframe); NaT stays NaT."""
    return value.ceil(resolution) if isinstance(value, pd.Timedelta) else value
