"""Backtest outputs: PNGs (equity and drawdown against buy-and-hold; candles with the trades marked),
backtest.json (the statistics) and trades.csv, written by `write_report`."""

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mplfinance as mpf
import numpy as np
import pandas as pd
from matplotlib.ticker import FormatStrFormatter

from botter.atomic import atomic_path
from botter.backtest import Result, stats_table
from botter.data.candles import between
from botter.errors import BotterError
from botter.stats import drawdown

logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)


def write_report(results: dict[str, Result], candles: dict[str, pd.DataFrame], out_dir, *,
                 plot_start=None, plot_end=None, sample: str = "out-of-sample") -> list[Path]:
    """Write backtest.json, trades.csv, equity.png and trades_<symbol>.png into `out_dir`.

    results: from botter.backtest.backtest_predictions (per symbol plus "portfolio"). With
    plot_start / plot_end, also trades_<symbol>_zoom.png for that date range. sample: "IN-SAMPLE"
    or "out-of-sample", written into every file and title. Returns the paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "backtest.json", out / "trades.csv", out / "equity.png"]
    mark = "IN-SAMPLE · " if sample == "IN-SAMPLE" else ""
    table = stats_table(results, sample=sample)
    with atomic_path(paths[0]) as tmp:
        tmp.write_text(json.dumps({k: {i: _json(v) for i, v in col.items()} for k, col in table.items()},
                                  indent=2))
    with atomic_path(paths[1]) as tmp:
        results["portfolio"].trades.assign(Sample=sample).to_csv(tmp, index=False)
    plot_equity(results["portfolio"], paths[2], title=mark + ("portfolio" if len(results) > 2 else next(iter(results))))
    for symbol, r in results.items():
        if symbol == "portfolio":
            continue
        name = symbol.replace("/", "-")
        df = candles[symbol].loc[r.equity.index[0]:r.equity.index[-1]]
        paths.append(out / f"trades_{name}.png")
        plot_trades(df, r.trades, paths[-1], title=f"{mark}{symbol}: {len(r.trades)} trades")
        if plot_start is not None or plot_end is not None:
            paths.append(out / f"trades_{name}_zoom.png")
            plot_trades(df, r.trades, paths[-1], start=plot_start, end=plot_end,
                        title=f"{mark}{symbol}: {plot_start or 'start'} .. {plot_end or 'end'}")
    return paths


def _json(v):
    """A stats value as JSON: numbers stay numbers (NaN/inf as null), times and durations as text."""
    if isinstance(v, (pd.Timestamp, pd.Timedelta)):
        return str(v)
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, str):
        return v
    v = float(v)
    return v if np.isfinite(v) else None


def plot_equity(result: Result, path, *, title: str = "") -> None:
    """Equity (and buy-and-hold) over time on top, drawdown [%] below; written to `path`."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, height_ratios=(3, 1))
    s = result.stats
    top.plot(result.equity.index, result.equity, lw=1.2, color="tab:blue",
             label=f"strategy {s['Return [%]']:+.2f} %")
    top.plot(result.buy_hold.index, result.buy_hold, lw=1, color="tab:gray", alpha=0.8,
             label=f"buy & hold {s['Buy & Hold Return [%]']:+.2f} %")
    top.set_ylabel("equity (quote)")
    top.set_title(f"{title}  ·  {s['# Trades']} trades, fees {s['Fees Paid']:.4g}, "
                  f"Sharpe {s['Sharpe Ratio']:.2f}")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    drawdown_panel(bottom, result.equity)
    save(fig, path)


def drawdown_panel(ax, equity: pd.Series) -> None:
    """Draw the drawdown [%] of an equity curve on `ax` (the lower panel of an equity figure)."""
    percent = -drawdown(equity) * 100
    ax.fill_between(equity.index, percent, 0, color="tab:red", alpha=0.4, lw=0)
    ax.set_ylabel("drawdown [%]")
    ax.grid(alpha=0.3)


def save(fig, path, dpi: int = 100) -> None:
    """Write a time-axis figure to `path` as PNG and close it (open figures pile up in loops)."""
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def plot_trades(candles: pd.DataFrame, trades: pd.DataFrame, path, *, start=None, end=None,
                title: str = "") -> None:
    """Candles with open time in [start, end) (UTC; default: all) with the trades marked.

    Long entries are green triangles under the candle, short entries red triangles over it, exits
    black crosses at the exit fill price (a trade closed at the end is marked on the last candle).
    """
    df = between(candles, start, end)
    if len(df) < 2:
        raise BotterError(f"plot period {start} .. {end} holds {len(df)} candles: pick dates inside "
                          f"{candles.index[0]} .. {candles.index[-1]}")
    entry = df.index.get_indexer(trades["EntryTime"])
    exit_ = df.index.get_indexer(trades["ExitTime"].where(trades["ExitTime"] <= candles.index[-1],
                                                          candles.index[-1]))
    pad = (df["high"] - df["low"]).median() / 2
    marks = []
    for side, marker, color, price in ((1, "^", "tab:green", df["low"] - pad),
                                       (-1, "v", "tab:red", df["high"] + pad)):
        y = np.full(len(df), np.nan)
        keep = (entry >= 0) & (trades["Side"].to_numpy() == side)
        y[entry[keep]] = price.to_numpy()[entry[keep]]
        marks.append((y, marker, color))
    y = np.full(len(df), np.nan)
    y[exit_[exit_ >= 0]] = trades["ExitPrice"].to_numpy()[exit_ >= 0]
    marks.append((y, "x", "black"))
    plots = [mpf.make_addplot(y, type="scatter", marker=m, color=c, markersize=40)
             for y, m, c in marks if np.isfinite(y).any()]
    lo, hi = df["low"].min() - 2 * pad, df["high"].max() + 2 * pad  # room for the markers
    fig, axes = mpf.plot(df, type="candle", style="charles", addplot=plots, returnfig=True, ylim=(lo, hi),
                         figsize=(16, 7), title=title, ylabel="price", warn_too_much_data=len(df) + 1)
    axes[0].yaxis.set_major_formatter(FormatStrFormatter("%.6g"))  # BTC-quoted prices are small
    fig.savefig(path, dpi=100)
    plt.close(fig)
