"""Backtest outputs: PNGs (equity and drawdown against buy-and-hold; candles with the trades marked),
backtest.json (the statistics) and trades.csv, written by `write_report`.

Every chart stays readable and quick at any size: a line keeps at most the lowest and highest value
of each of about PIXELS slices of time (`thin`), so a 10 M-candle equity curve draws as fast as a
short one and loses no peak or trough; the trades chart marks trades one by one only where they
stay apart (`plot_trades`).
"""

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter

from botter.atomic import atomic_path
from botter.backtest import Result, stats_table
from botter.data.candles import between
from botter.errors import BotterError
from botter.stats import drawdown

logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

PIXELS = 1500  # slices of time a line keeps 2 points of: about one per pixel column of a saved chart
MAX_MARKED = 150  # trades the trades chart marks over a whole period; past that it zooms in
ZOOM = 150  # candles the zoomed trades chart shows: the last ones of the period
MAX_CANDLES = 400  # candles drawn as candlesticks; a longer stretch is drawn as its price band
UP, DOWN = "#26a69a", "#ef5350"  # candle colours
# How trades are marked, with the legend text of each marker.
MARKERS = {
    "long": {"marker": "^", "color": "tab:green", "label": "long entry (under the candle)"},
    "short": {"marker": "v", "color": "tab:red", "label": "short entry (over the candle)"},
    "exit": {"marker": "x", "color": "black", "label": "exit (at its fill price)"},
}


def write_report(results: dict[str, Result], candles: dict[str, pd.DataFrame], out_dir, *,
                 plot_start=None, plot_end=None, sample: str = "out-of-sample",
                 settings: dict | None = None) -> list[Path]:
    """Write backtest.json, trades.csv, equity.png and trades_<symbol>.png (and settings.json) into `out_dir`.

    results: from botter.backtest.backtest_predictions (per symbol plus "portfolio"). With
    plot_start / plot_end, also trades_<symbol>_zoom.png for that date range. sample: "IN-SAMPLE"
    or "out-of-sample", written into every file and title. settings: the
    signal and cost settings the backtest ran with, written as settings.json (backtests of one run
    differ by them). Returns the paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "backtest.json", out / "trades.csv", out / "equity.png"]
    mark = "IN-SAMPLE · " if sample == "IN-SAMPLE" else ""
    table = stats_table(results, sample=sample)
    with atomic_path(paths[0]) as tmp:
        tmp.write_text(json.dumps({k: {i: _json(v) for i, v in col.items()} for k, col in table.items()},
                                  indent=2))
    if settings is not None:
        paths.append(out / "settings.json")
        with atomic_path(paths[-1]) as tmp:
            tmp.write_text(json.dumps({"sample": sample, **settings}, indent=2))
    with atomic_path(paths[1]) as tmp:
        results["portfolio"].trades.assign(Sample=sample).to_csv(tmp, index=False)
    plot_equity(results["portfolio"], paths[2], title=mark + ("portfolio" if len(results) > 2 else next(iter(results))))
    for symbol, r in results.items():
        if symbol == "portfolio":
            continue
        name = symbol.replace("/", "-")
        df = candles[symbol].loc[r.equity.index[0]:r.equity.index[-1]]
        paths.append(out / f"trades_{name}.png")
        plot_trades(df, r.trades, paths[-1], title=f"{mark}{symbol}")
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


def thin(s: pd.Series, bins: int = PIXELS) -> pd.Series:
    """`s` as a chart draws it: for a long series, the lowest and the highest value of each of `bins`
    equal runs of it (at the run's first time: one pixel column holds both), then its last value.
    No peak or trough is lost at the chart's resolution; a series of 4 * bins points or fewer is
    returned as it is.
    """
    if len(s) <= 4 * bins:
        return s
    starts, lo, hi = _runs(s.to_numpy(np.float64), bins)
    index = s.index[np.repeat(starts, 2)].append(s.index[-1:])
    return pd.Series(np.append(np.column_stack([lo, hi]).ravel(), s.iloc[-1]), index=index, name=s.name)


def _runs(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first position, min, max) of each of `bins` equal runs of `values`."""
    starts = np.linspace(0, len(values), bins, endpoint=False).astype(np.int64)
    return starts, np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)


def plot_equity(result: Result, path, *, title: str = "") -> None:
    """Equity (and buy-and-hold) over time on top, drawdown [%] below; written to `path`."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, height_ratios=(3, 1))
    s = result.stats
    equity, buy_hold = thin(result.equity), thin(result.buy_hold)
    top.plot(_utc(equity.index), equity, lw=1.2, color="tab:blue", label=f"strategy {s['Return [%]']:+.2f} %")
    top.plot(_utc(buy_hold.index), buy_hold, lw=1, color="tab:gray", alpha=0.8,
             label=f"buy & hold {s['Buy & Hold Return [%]']:+.2f} %")
    top.set_ylabel("equity (quote)")
    # No annualised figure in the title: over a few days of candles they are extreme by definition.
    share = s["Fees / Gross PnL [%]"]
    costs = f"fees {share:.0f} % of the gross PnL" if np.isfinite(share) else "no gross profit before fees"
    top.set_title(f"{title}  ·  {s['# Trades']} trades, fees {s['Fees Paid']:.4g} ({costs})", loc="left", fontsize=10)
    # Above the axes, not inside: a curve that spans the whole panel leaves no corner free.
    top.legend(loc="lower right", bbox_to_anchor=(1, 1), ncols=2, fontsize=9, frameon=False)
    low = min(equity.min(), buy_hold.min())
    if low > 0 and max(equity.max(), buy_hold.max()) / low > 20:  # a 50x curve flattens its first half on a linear scale
        top.set_yscale("log")
    top.grid(alpha=0.3)
    drawdown_panel(bottom, result.equity)
    save(fig, path)


def drawdown_panel(ax, equity: pd.Series) -> None:
    """Draw the drawdown [%] of an equity curve on `ax` (the lower panel of an equity figure), over
    exactly the curve's time span."""
    percent = thin(pd.Series(-drawdown(equity) * 100, index=equity.index))
    ax.fill_between(_utc(percent.index), percent, 0, color="tab:red", alpha=0.4, lw=0)
    ax.set_ylabel("drawdown [%]")
    ax.set_xlim(*_utc(equity.index[[0, -1]]))
    ax.grid(alpha=0.3)


def save(fig, path, dpi: int = 100) -> None:
    """Write a time-axis figure to `path` as PNG and close it (open figures pile up in loops).
    Dates are labelled concisely (UTC), with no rotated labels."""
    for ax in fig.axes:
        if isinstance(ax.xaxis.get_major_formatter(), mdates.AutoDateFormatter):
            locator = mdates.AutoDateLocator()
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if not fig.get_layout_engine():
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def _utc(index: pd.DatetimeIndex) -> np.ndarray:
    """Times as naive UTC datetime64, which matplotlib draws as they are."""
    index = pd.DatetimeIndex(index)
    return (index.tz_convert(None) if index.tz is not None else index).to_numpy()


def plot_trades(candles: pd.DataFrame, trades: pd.DataFrame, path, *, start=None, end=None,
                title: str = "", zoom: int = ZOOM) -> None:
    """The trades of candles with open time in [start, end) (UTC; default: all), written to `path`.

    Top: the price with each trade marked, long entries as green triangles under the candle,
    short entries as red triangles over it, exits as black crosses at the exit fill price (a trade
    closed at the end is marked on the last candle), with a legend. With up to MAX_MARKED trades in
    the period it shows the whole period; with more, only its last `zoom` candles, since
    markers closer than a few pixels hide the price. Up to MAX_CANDLES candles are drawn as
    candlesticks, a longer stretch as its low-high band and close.
    Below, over the whole period: the trades' cumulative PnL (the span shown on top shaded), the
    distribution of their returns, the trade count and win rate.
    """
    df = between(candles, start, end)
    if len(df) < 2:
        raise BotterError(f"plot period {start} .. {end} holds {len(df)} candles: pick dates inside "
                          f"{candles.index[0]} .. {candles.index[-1]}")
    entered = trades[(trades["EntryTime"] >= df.index[0]) & (trades["EntryTime"] <= df.index[-1])]
    zoomed = len(entered) > MAX_MARKED and len(df) > zoom
    shown = df.iloc[-zoom:] if zoomed else df
    fig = plt.figure(figsize=(15, 8), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(3, 1.2), width_ratios=(3, 1))
    price = fig.add_subplot(grid[0, :])
    _price_panel(price, shown)
    _mark(price, shown, entered, last=candles.index[-1])
    # above the chart, right of the title: a legend inside would cover candles
    price.legend(handles=[Line2D([], [], ls="", markersize=8, **m) for m in MARKERS.values()], ncols=3,
                 loc="lower right", bbox_to_anchor=(1, 1), fontsize=9, frameon=False, borderaxespad=0.2)
    price.set_title(f"{title}: last {len(shown)} of {len(df)} candles, {_count(entered, shown)} of "
                    f"{len(entered)} trades (all of them below)" if zoomed else
                    f"{title}: {len(df)} candles, {len(entered)} trades", loc="left")
    _summary(fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1]), entered, df,
             span=_utc(shown.index[[0, -1]]) if zoomed else None)
    save(fig, path)


def _count(trades: pd.DataFrame, shown: pd.DataFrame) -> int:
    return int(((trades["EntryTime"] >= shown.index[0]) & (trades["EntryTime"] <= shown.index[-1])).sum())


def _price_panel(ax, df: pd.DataFrame) -> None:
    """Candlesticks, or for a long stretch the low-high band and the close; x-limits are the candles'."""
    if len(df) <= MAX_CANDLES:
        x = _utc(df.index)
        bar = _bar(x)
        o, h, l, c = (df[k].to_numpy() for k in ("open", "high", "low", "close"))
        colors = np.where(c >= o, UP, DOWN)
        ax.vlines(x, l, h, colors=colors, lw=0.8, zorder=1)
        ax.bar(x, np.maximum(np.abs(c - o), (h - l).max() * 1e-3), bottom=np.minimum(o, c), width=bar * 0.7,
               color=colors, zorder=2)
        ax.set_xlim(x[0] - bar, x[-1] + bar)  # room for a marker on the first and the last candle
    else:
        starts, lo, _ = _runs(df["low"].to_numpy(np.float64), PIXELS)
        _, _, hi = _runs(df["high"].to_numpy(np.float64), PIXELS)
        ax.fill_between(_utc(df.index[starts]), lo, hi, color="tab:gray", alpha=0.35, lw=0, step="post")
        close = thin(df["close"])
        ax.plot(_utc(close.index), close, color="tab:blue", lw=0.6)
        ax.set_xlim(*_utc(df.index[[0, -1]]))
    ax.set_ylabel("price")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.6g"))  # BTC-quoted prices are small
    ax.grid(alpha=0.3)


def _bar(x: np.ndarray):
    """One candle's length: the shortest of the first steps of `x` (a gap is longer, never shorter)."""
    return np.diff(x[:101]).min()


def _mark(ax, shown: pd.DataFrame, trades: pd.DataFrame, *, last) -> None:
    """Entries and exits of `trades` that fall on the `shown` candles; y-limits leave room for them."""
    pad = float((shown["high"] - shown["low"]).median()) * 0.6
    entry = _positions(shown.index, trades["EntryTime"])
    exit_ = _positions(shown.index, trades["ExitTime"].where(trades["ExitTime"] <= last, last))
    side = trades["Side"].to_numpy()
    for name, price in (("long", shown["low"] - pad), ("short", shown["high"] + pad)):
        at = entry[(entry >= 0) & (side == (1 if name == "long" else -1))]
        m = MARKERS[name]
        ax.scatter(_utc(shown.index[at]), price.to_numpy()[at], s=70, marker=m["marker"], color=m["color"], zorder=4,
                   edgecolors="white", linewidths=0.5)
    ok = exit_ >= 0
    ax.scatter(_utc(shown.index[exit_[ok]]), trades["ExitPrice"].to_numpy()[ok], s=70, marker="x", color="black", zorder=5,
               linewidths=1.5)
    ax.set_ylim(shown["low"].min() - 2 * pad, shown["high"].max() + 2 * pad)


def _positions(index: pd.DatetimeIndex, times: pd.Series) -> np.ndarray:
    """Position of each time in `index`, -1 where it is not one of its times (binary search: fast
    on 10 M candles)."""
    times = pd.DatetimeIndex(times)
    at = np.minimum(index.searchsorted(times), len(index) - 1)
    return np.where(index[at] == times, at, -1)


def _summary(pnl_ax, dist_ax, trades: pd.DataFrame, period: pd.DataFrame, *, span) -> None:
    """The cumulative PnL of `trades` over `period` (with `span` shaded) and their return histogram."""
    first, last = _utc(period.index[[0, -1]])
    pnl_ax.set_xlim(first, last + _bar(_utc(period.index[:101])))  # to the last close, where a trade closed at the end exits
    pnl_ax.grid(alpha=0.3)
    pnl_ax.set_ylabel("cumulative PnL")
    if span is not None:  # its left edge drawn too: 150 of 10 M candles is narrower than a pixel
        pnl_ax.axvspan(*span, color="gold", alpha=0.4, lw=0)
        pnl_ax.axvline(span[0], color="goldenrod", lw=1.5, label="the candles above, from here")
        pnl_ax.legend(loc="best", fontsize=9)
    if trades.empty:
        pnl_ax.text(0.5, 0.5, "no trades", transform=pnl_ax.transAxes, ha="center", va="center")
        dist_ax.set_axis_off()
        return
    cum = pd.Series(trades["PnL"].to_numpy().cumsum(), index=pd.DatetimeIndex(trades["ExitTime"]))
    cum = thin(pd.concat([pd.Series([0.0], index=period.index[:1]), cum]))  # from 0 at the period's start
    pnl_ax.plot(_utc(cum.index), cum, color="tab:blue", lw=1, drawstyle="steps-post")
    pnl_ax.plot(_utc(cum.index[-1:]), cum.iloc[-1:], "o", color="tab:blue", ms=4, clip_on=False)  # the final PnL
    pnl_ax.axhline(0, color="black", lw=0.6)
    returns = trades["Return [%]"].to_numpy()
    won = (trades["PnL"] > 0).mean() * 100
    pnl_ax.set_title(f"{len(trades)} trade{'s' * (len(trades) != 1)}, {won:.1f} % won, PnL {cum.iloc[-1]:+.4g}, "
                     f"average return {returns.mean():+.3f} %", loc="left", fontsize=10)
    width = max(np.ptp(returns), 1e-9) / np.clip(len(returns) // 4, 5, 50)
    first, last = np.floor(returns.min() / width), np.ceil(returns.max() / width)
    edges = np.arange(first, max(last, first + 1) + 1) * width  # 0 is an edge
    counts, edges = np.histogram(returns, bins=edges)
    centers = (edges[:-1] + edges[1:]) / 2
    dist_ax.bar(centers, counts, width=np.diff(edges), color=np.where(centers >= 0, UP, DOWN), lw=0)
    dist_ax.axvline(0, color="black", lw=0.6)
    dist_ax.set_xlabel("trade return [%]")
    dist_ax.set_ylabel("trades")
    dist_ax.grid(alpha=0.3)
