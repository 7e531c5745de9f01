"""What a paper run's ledger says: a summary to print and an equity-curve PNG."""

import numpy as np
import pandas as pd

from botter.paper.ledger import Ledger
from botter.stats import max_drawdown, total_return

SIDES = {-1: "short", 0: "flat", 1: "long"}


def summary(ledger: Ledger) -> pd.Series:
    """The state of a paper run, with labelled keys and units (quote currency unless said).

    Return [%], Buy & Hold Return [%] and Max. Drawdown [%] are the backtest's figures (botter.stats)
    of the equity and closes at each recorded close. Round trips count positions closed (a flip
    closes one and opens another); fees are in quote.
    """
    bars, fills = ledger.table("bars"), ledger.table("fills")
    meta, state = ledger.meta(), ledger.state()
    if state is None:
        return pd.Series({"Symbol": meta.get("symbol"), "Candles": 0})
    cash0 = float(meta["cash"])
    sides = bars["side"].to_numpy()
    closed = int(np.count_nonzero((sides[1:] != sides[:-1]) & (sides[:-1] != 0)))
    return pd.Series({
        "Symbol": f"{meta['symbol']} {meta['timeframe']}",
        "Feed": meta["feed"],
        "Sample": meta.get("sample", "out-of-sample"),
        "First candle": bars["time"].iloc[0],
        "Last candle": bars["time"].iloc[-1],
        "Candles": len(bars),
        "Last close": bars["close"].iloc[-1],
        "Position": f"{SIDES[state.side]} {abs(state.position):.8g}",
        "Next open": f"go {SIDES[state.target]}" if state.target != state.side else "hold",
        "Cash": state.cash,
        "Equity": state.equity,
        "Start equity": cash0,
        "PnL": state.equity - cash0,
        "Return [%]": total_return(bars["equity"]),
        "Buy & Hold Return [%]": total_return(bars["close"]),
        "Max. Drawdown [%]": max_drawdown(bars["equity"]),
        "# Fills": len(fills),
        "# Round trips": closed,
        "Fees": float(fills["fee"].sum()),
    })


def plot_equity(ledger: Ledger, path) -> None:
    """Write the equity curve (against buy-and-hold from the first close), the fills and the drawdown.

    The fills get a lane of their own under the curve, buys as green triangles up, sells as red
    triangles down, at a size that shows (on the curve, many of them would hide it). A long run is
    drawn thinned (botter.plots.thin), one marker per side per pixel column.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from botter.plots import PIXELS, drawdown_panel, save, thin  # sets the Agg backend

    bars, fills = ledger.table("bars"), ledger.table("fills")
    meta = ledger.meta()
    fig, (ax, lane, ax_dd) = plt.subplots(3, 1, figsize=(11, 6.5), sharex=True, height_ratios=[3, 0.5, 1])
    equity = bars.set_index("time")["equity"]
    hold = thin(float(meta["cash"]) * bars.set_index("time")["close"] / bars["close"].iloc[0])
    ax.plot(thin(equity), label="paper equity", color="tab:blue", lw=1.2, zorder=3)
    ax.plot(hold, label="buy & hold", color="gray", lw=0.8, alpha=0.8)
    column = max((equity.index[-1] - equity.index[0]) / PIXELS, pd.Timedelta(1, "ms"))
    marks = []
    for side, y, marker, color in (("buy", 1, "^", "tab:green"), ("sell", 0, "v", "tab:red")):
        times = pd.DatetimeIndex(fills.loc[fills["side"] == side, "time"])
        shown = times[~pd.Index((times - equity.index[0]) // column).duplicated()]  # one per pixel column
        lane.scatter(shown, np.full(len(shown), y), marker=marker, color=color, s=60, lw=0)
        marks.append(Line2D([], [], ls="", marker=marker, color=color, markersize=8,
                            label=f"{len(times)} {side} fills (the lane below)"))
    lane.set_ylim(-0.7, 1.7)
    lane.set_yticks([0, 1], ["sell", "buy"])
    lane.grid(axis="x", alpha=0.3)
    ax.set_ylabel("equity (quote)")
    ax.set_title(f"paper {meta['feed']}: {meta['symbol']} {meta['timeframe']}, {len(bars)} candles, "
                 f"{len(fills)} fills, last {bars['time'].iloc[-1]:%Y-%m-%d %H:%M} UTC")
    ax.legend(handles=ax.get_legend_handles_labels()[0] + marks, loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    drawdown_panel(ax_dd, equity)
    save(fig, path, dpi=110)
