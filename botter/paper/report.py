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
    """Write the equity curve (against buy-and-hold from the first close) with the fills marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from botter.plots import drawdown_panel

    bars, fills = ledger.table("bars"), ledger.table("fills")
    meta = ledger.meta()
    fig, (ax, ax_dd) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=[3, 1])
    equity = bars.set_index("time")["equity"]
    ax.plot(equity.index, equity, label="paper equity", color="tab:blue", lw=1.2, zorder=3)
    ax.plot(equity.index, float(meta["cash"]) * bars["close"] / bars["close"].iloc[0], label="buy & hold",
            color="gray", lw=0.8, alpha=0.8)
    at = equity.reindex(pd.DatetimeIndex(fills["time"]))
    size = min(22.0, max(2.0, 2500 / max(len(fills), 1)))  # many fills: small marks that leave the curve visible
    for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
        mask = (fills["side"] == side).to_numpy()
        ax.scatter(at.index[mask], at.to_numpy()[mask], marker=marker, color=color, s=size, alpha=0.7, lw=0,
                   zorder=2, label=f"{side} fills")
    ax.set_ylabel("equity (quote)")
    ax.set_title(f"paper {meta['feed']}: {meta['symbol']} {meta['timeframe']}, {len(bars)} candles, "
                 f"{len(fills)} fills, last {bars['time'].iloc[-1]:%Y-%m-%d %H:%M} UTC")
    ax.legend(loc="upper left", fontsize=8, markerscale=(22 / size) ** 0.5)
    ax.grid(alpha=0.3)
    drawdown_panel(ax_dd, equity)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
