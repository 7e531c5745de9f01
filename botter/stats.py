"""Backtest statistics in the shape backtesting.py reports them: a pandas Series with labelled keys.

Annualised figures use the candle timeframe and a 365-day year (crypto trades around the clock).
Percentages are in percent; equity and fees in quote currency; durations are Timedeltas.
"""

import numpy as np
import pandas as pd

YEAR = pd.Timedelta(days=365)


def compute_stats(equity: pd.Series, trades: pd.DataFrame, buy_hold: pd.Series, in_market,
                  bar: pd.Timedelta) -> pd.Series:
    """Statistics of one equity curve and its trades.

    equity: equity per candle, marked at the close (the first value is the starting cash).
    trades: botter.backtest.TRADE_COLUMNS rows. buy_hold: the buy-and-hold equity for comparison.
    in_market: bool per candle, True while a position is held. bar: the candle timeframe.

    Return (Ann.) compounds the mean per-candle growth over a year of candles; Volatility (Ann.) is
    the per-candle standard deviation times sqrt(candles per year); Sharpe = Return (Ann.) /
    Volatility (Ann.) (no risk-free rate); Sortino uses the downside deviation; Calmar =
    Return (Ann.) / Max. Drawdown. Drawdowns are negative percentages. Avg. Trade is the geometric
    mean of trade returns, Expectancy the arithmetic mean; SQN = sqrt(#trades) * mean(PnL) / std(PnL).
    """
    eq = equity.to_numpy(np.float64)
    index = equity.index
    r = eq[1:] / eq[:-1] - 1  # per-candle returns
    per_year = YEAR / bar
    total = eq[-1] / eq[0]
    years = (index[-1] - index[0]) / YEAR
    with np.errstate(over="ignore"):  # a short, lucky backtest annualises to inf: say so
        ann_return = total ** (per_year / len(r)) - 1 if total > 0 else -1.0
        cagr = total ** (1 / years) - 1 if total > 0 and years > 0 else np.nan
    vol = r.std(ddof=1) * np.sqrt(per_year) if len(r) > 1 else np.nan
    downside = np.sqrt(np.mean(np.minimum(r, 0) ** 2)) * np.sqrt(per_year)
    dd = 1 - eq / np.maximum.accumulate(eq)
    max_dd = dd.max()
    depth, duration = _drawdowns(dd, index)

    pnl = trades["PnL"].to_numpy(np.float64)
    ret = trades["Return [%]"].to_numpy(np.float64)
    n = len(trades)
    gains, losses = pnl[pnl > 0].sum(), -pnl[pnl < 0].sum()
    s = {
        "Start": index[0],
        "End": index[-1],
        "Duration": index[-1] - index[0],
        "Exposure Time [%]": np.mean(in_market) * 100,
        "Equity Final": eq[-1],
        "Equity Peak": eq.max(),
        "Return [%]": (total - 1) * 100,
        "Buy & Hold Return [%]": (buy_hold.iloc[-1] / buy_hold.iloc[0] - 1) * 100,
        "Return (Ann.) [%]": ann_return * 100,
        "Volatility (Ann.) [%]": vol * 100,
        "CAGR [%]": cagr * 100,
        "Sharpe Ratio": _ratio(ann_return, vol),
        "Sortino Ratio": _ratio(ann_return, downside),
        "Calmar Ratio": _ratio(ann_return, max_dd),
        "Max. Drawdown [%]": -max_dd * 100,
        "Avg. Drawdown [%]": -depth.mean() * 100 if len(depth) else np.nan,
        "Max. Drawdown Duration": duration.max() if len(duration) else pd.NaT,
        "Avg. Drawdown Duration": duration.mean() if len(duration) else pd.NaT,
        "# Trades": n,
        "Win Rate [%]": (pnl > 0).mean() * 100 if n else np.nan,
        "Best Trade [%]": ret.max() if n else np.nan,
        "Worst Trade [%]": ret.min() if n else np.nan,
        "Avg. Trade [%]": _geometric_mean(ret / 100) * 100 if n else np.nan,
        "Max. Trade Duration": trades["Duration"].max() if n else pd.NaT,
        "Avg. Trade Duration": trades["Duration"].mean() if n else pd.NaT,
        "Profit Factor": _ratio(gains, losses) if n else np.nan,
        "Expectancy [%]": ret.mean() if n else np.nan,
        "SQN": np.sqrt(n) * pnl.mean() / pnl.std(ddof=1) if n > 1 and pnl.std() > 0 else np.nan,
        "Fees Paid": trades["Fees"].sum(),
    }
    return pd.Series(s, dtype=object)


def _geometric_mean(returns: np.ndarray) -> float:
    """Mean per-trade growth; NaN when a trade lost all of its notional (a short can)."""
    with np.errstate(invalid="ignore"):
        return np.exp(np.log1p(returns).mean()) - 1


def _ratio(a: float, b: float) -> float:
    """a / b, NaN when b is zero or undefined (no risk taken: the ratio says nothing)."""
    return a / b if b and np.isfinite(b) else np.nan


def _drawdowns(dd: np.ndarray, index: pd.DatetimeIndex) -> tuple[np.ndarray, pd.TimedeltaIndex]:
    """Depth (fraction) and duration (peak to recovery, or to the end) of every drawdown period."""
    peaks = np.flatnonzero(dd == 0)  # each peak opens a group: it and the candles below it
    depth = np.maximum.reduceat(dd, peaks)
    # A drawdown lasts until the next peak (the recovery candle), or until the last candle.
    recovery = np.append(peaks[1:], len(dd) - 1)
    below = depth > 0
    return depth[below], index[recovery[below]] - index[peaks[below]]
