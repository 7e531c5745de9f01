"""What a paper run's ledger says: a summary to print and an equity-curve PNG."""

import numpy as np
import pandas as pd

from botter.backtest import add_up
from botter.errors import BotterError
from botter.paper.ledger import Ledger
from botter.stats import max_drawdown, total_return

SIDES = {-1: "short", 0: "flat", 1: "long"}


ROWS = ["Symbol", "Feed", "Sample", "First candle", "Last candle", "Candles", "Skipped", "Last close", "Position",
        "Next open", "Cash", "Equity", "Start equity", "PnL", "Return [%]", "Buy & Hold Return [%]",
        "Max. Drawdown [%]", "# Fills", "# Round trips", "Fees"]


def curves(ledger: Ledger) -> dict[str, tuple[pd.Series, pd.Series]]:
    """{symbol: (equity, buy & hold)} at each recorded close of the symbol (the symbols with a candle
    recorded), and "portfolio": the whole account's, by the backtest's portfolio rule
    (botter.backtest.add_up; a symbol with no candle yet counts with its share of the cash). Buy &
    hold holds each symbol's share of the cash from its first close."""
    bars, meta = ledger.table("bars"), ledger.meta()
    symbols = ledger.symbols()
    if "cash" not in meta:
        if bars.empty:
            return {}
        raise BotterError(f"the paper ledger {ledger.path} holds candles but not the settings they were traded "
                          "under (no cash in its meta table: it was altered): restore it from a copy")
    share = float(meta["cash"]) / len(symbols)
    out = {}
    for symbol in symbols:
        b = bars[bars["symbol"] == symbol].set_index("time")
        if len(b):
            out[symbol] = (b["equity"], share * b["close"] / b["close"].iloc[0])
    if out:
        waiting = share * (len(symbols) - len(out))
        out["portfolio"] = tuple(add_up([c[k] for c in out.values()]) + waiting for k in (0, 1))
    return out


def summary(ledger: Ledger) -> pd.DataFrame:
    """The state of a paper run: one column per symbol and one for the whole account ("portfolio"),
    the rows ROWS, in quote currency unless said.

    Return [%], Buy & Hold Return [%] and Max. Drawdown [%] are the backtest's figures (botter.stats)
    of the equity and buy-and-hold curves at each recorded close (`curves`). Round trips count
    positions closed (a flip closes one and opens another). Skipped: candles the feed handed on that
    could not be traded (the ledger's `skipped` table says why).
    """
    meta, states, symbols = ledger.meta(), ledger.states(), ledger.symbols()
    bars, fills, skipped = (ledger.table(n) for n in ("bars", "fills", "skipped"))
    lines = curves(ledger)
    share = float(meta["cash"]) / len(symbols) if "cash" in meta else None
    common = {"Feed": meta.get("feed"), "Sample": meta.get("sample", "unknown (an older ledger: resume it to check)")}
    columns = {}
    for symbol in symbols:
        b, f, state = bars[bars["symbol"] == symbol], fills[fills["symbol"] == symbol], states.get(symbol)
        column = {"Symbol": f"{symbol} {meta.get('timeframe', '')}".strip(), **common, "Candles": len(b),
                  "Skipped": int((skipped["symbol"] == symbol).sum())}
        if state is not None:
            sides = b["side"].to_numpy()
            equity, hold = lines[symbol]
            column |= {
                "First candle": b["time"].iloc[0], "Last candle": b["time"].iloc[-1], "Last close": b["close"].iloc[-1],
                "Position": f"{SIDES[state.side]} {abs(state.position):.8g}",
                "Next open": f"go {SIDES[state.target]}" if state.target != state.side else "hold",
                # A position that takes all the cash leaves float noise (-1e-18), shown as "-0.0".
                "Cash": round(state.cash, 12) + 0.0, "Equity": state.equity, "Start equity": share, "PnL": state.equity - share,
                "Return [%]": total_return(equity), "Buy & Hold Return [%]": total_return(hold),
                "Max. Drawdown [%]": max_drawdown(equity), "# Fills": len(f),
                "# Round trips": int(np.count_nonzero((sides[1:] != sides[:-1]) & (sides[:-1] != 0))),
                "Fees": float(f["fee"].sum()),
            }
        columns[symbol] = column
    column = {"Symbol": ", ".join(symbols), **common, "Candles": bars["time"].nunique(), "Skipped": len(skipped)}
    if states:
        equity, hold = lines["portfolio"]
        traded = [columns[s] for s in states]
        cash = sum(c["Cash"] for c in traded) + share * (len(symbols) - len(states))
        column |= {
            "First candle": bars["time"].min(), "Last candle": bars["time"].max(), "Cash": cash,
            "Equity": float(equity.iloc[-1]), "Start equity": float(meta["cash"]),
            "PnL": float(equity.iloc[-1]) - float(meta["cash"]), "Return [%]": total_return(equity),
            "Buy & Hold Return [%]": total_return(hold), "Max. Drawdown [%]": max_drawdown(equity),
            **{k: sum(c[k] for c in traded) for k in ("# Fills", "# Round trips", "Fees")},
        }
    columns["portfolio"] = column
    return pd.DataFrame(columns).reindex([r for r in ROWS if any(r in c for c in columns.values())]).fillna("")


MARKED_FILLS = 150  # past this, fill markers merge into a band
FILL_BINS = 120


def _span(width: pd.Timedelta) -> str:
    """A bar's time span as text, like 2h 5m or 35m."""
    days, minutes = divmod(max(round(width.total_seconds() / 60), 1), 1440)
    parts = zip((days, minutes // 60, minutes % 60), "dhm")
    return " ".join(f"{n}{unit}" for n, unit in parts if n)


def plot_equity(ledger: Ledger, path) -> None:
    """Write the equity curve (against buy-and-hold from the first close), the fills and the drawdown.

    The fills get a lane of their own under the curve, buys as green triangles up, sells as red
    triangles down, at a size that shows (on the curve, many of them would hide it); past
    MARKED_FILLS fills, as bars counting them per slice of time (buys up, sells down). A long run is
    drawn thinned (botter.plots.thin).
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    from botter.plots import PIXELS, drawdown_panel, save, thin  # sets the Agg backend

    fills, meta = ledger.table("fills"), ledger.meta()
    equity, hold = curves(ledger)["portfolio"]
    fig, (ax, lane, ax_dd) = plt.subplots(3, 1, figsize=(11, 6.5), sharex=True, height_ratios=[3, 0.5, 1])
    ax.plot(thin(equity), label="paper equity", color="tab:blue", lw=1.2, zorder=3)
    ax.plot(thin(hold), label="buy & hold", color="gray", lw=0.8, alpha=0.8)
    marks = []
    if len(fills) <= MARKED_FILLS:
        column = max((equity.index[-1] - equity.index[0]) / PIXELS, pd.Timedelta(1, "ms"))
        for side, y, marker, color in (("buy", 1, "^", "tab:green"), ("sell", 0, "v", "tab:red")):
            times = pd.DatetimeIndex(fills.loc[fills["side"] == side, "time"])
            shown = times[~pd.Index((times - equity.index[0]) // column).duplicated()]  # one per pixel column
            lane.scatter(shown, np.full(len(shown), y), marker=marker, color=color, s=60, lw=0)
            marks.append(Line2D([], [], ls="", marker=marker, color=color, markersize=8,
                                label=f"{len(times)} {side} fills (the lane below)"))
        lane.set_ylim(-0.7, 1.7)
        lane.set_yticks([0, 1], ["sell", "buy"])
    else:  # a marker per fill would be a solid band: count them per slice of time instead
        edges = pd.date_range(equity.index[0], equity.index[-1] + pd.Timedelta(1, "ms"), periods=FILL_BINS + 1)
        width = edges[1] - edges[0]
        for side, sign, color in (("buy", 1, "tab:green"), ("sell", -1, "tab:red")):
            times = pd.DatetimeIndex(fills.loc[fills["side"] == side, "time"])
            counts = np.histogram(times.asi8, bins=edges.asi8)[0]
            lane.bar(edges[:-1], sign * counts, width=width, align="edge", color=color, lw=0)
            marks.append(Patch(color=color, label=f"{len(times)} {side} fills (the lane below, per {_span(width)})"))
        lane.axhline(0, color="black", lw=0.6)
        lane.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{abs(v):g}"))  # sells count down, not below 0
        lane.set_ylabel("fills", fontsize=8)
    ax.set_ylabel("equity (quote)")
    mark = "IN-SAMPLE · " if meta.get("sample") == "IN-SAMPLE" else ""
    ax.set_title(f"{mark}paper {meta['feed']}: {', '.join(ledger.symbols())} {meta['timeframe']}, {len(equity)} candles, "
                 f"{len(fills)} fills, last {equity.index[-1]:%Y-%m-%d %H:%M} UTC")
    ax.legend(handles=ax.get_legend_handles_labels()[0] + marks, loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    drawdown_panel(ax_dd, equity)
    save(fig, path, dpi=110)
