"""The Plotly figures of a paper run's page, from a botter.dashboard.data.Paper.

Long series are drawn thinned (botter.plots.thin: the low and the high of each of about 1,500
slices of time), so a page over 100,000 candles sends a few thousand points, not 100,000, and no
peak or trough is lost. Times are drawn in UTC.
"""

import base64
import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from botter.plots import DOWN, UP, thin
from botter.stats import drawdown

# Each update keeps what the reader zoomed into (Plotly's uirevision) while new candles arrive.
LAYOUT = {"margin": {"l": 60, "r": 20, "t": 30, "b": 30}, "uirevision": "keep", "template": "plotly_white",
          "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
          "modebar": {"orientation": "v"}}  # the tool buttons down the right side, clear of the legend
FILLS = {"buy": {"symbol": "triangle-up", "color": "green"}, "sell": {"symbol": "triangle-down", "color": "red"}}


def _utc(times: pd.Series | pd.Index) -> pd.DatetimeIndex:
    """Times as naive UTC (Plotly.js has no time zones: an offset would be dropped or misread)."""
    return pd.DatetimeIndex(times).tz_convert("UTC").tz_localize(None)


def _line(fig, series: pd.Series, row: int, **trace) -> None:
    s = thin(series)
    fig.add_trace(go.Scatter(x=_utc(s.index), y=s.to_numpy(), mode="lines", **trace), row=row, col=1)


def equity(curves: dict, bars: pd.DataFrame) -> go.Figure:
    """The account's equity against buy-and-hold of the same cash (botter.paper.report.curves'
    "portfolio"), their drawdowns [%], and the side held in each symbol (-1 short, 0 flat, 1 long),
    one above the other on one time axis."""
    lanes = bars["symbol"].nunique()
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.03,
                        row_heights=[0.6, 0.25, 0.15] if lanes <= 1 else [0.5, 0.2, 0.3])
    if "portfolio" not in curves:
        return fig.update_layout(LAYOUT)
    eq, hold = curves["portfolio"]
    _line(fig, eq, 1, name="paper equity", line={"color": "#1f77b4", "width": 1.5})
    _line(fig, hold, 1, name="buy & hold", line={"color": "gray", "width": 1})
    _line(fig, pd.Series(-100 * drawdown(eq), index=eq.index), 2, name="drawdown", fill="tozeroy",
          line={"color": "#d62728", "width": 1})
    _line(fig, pd.Series(-100 * drawdown(hold), index=hold.index), 2, name="buy & hold drawdown",
          line={"color": "gray", "width": 1, "dash": "dot"})
    groups = list(bars.groupby("symbol", sort=False))
    # One symbol: its side on the -1/0/1 scale. Several: a band each (long above its line, short
    # below), since their lines on one scale would lie on top of each other.
    band = 1.0 if len(groups) == 1 else 0.35
    for k, (symbol, b) in enumerate(groups):
        _line(fig, pd.Series(-k + band * b["side"].to_numpy(np.float64), index=pd.DatetimeIndex(b["time"])), 3,
              name=f"{symbol} side", line={"width": 1, "shape": "hv"})
    fig.update_yaxes(title_text="equity (quote)", row=1, col=1)
    fig.update_yaxes(title_text="drawdown [%]", row=2, col=1)
    if len(groups) == 1:
        fig.update_yaxes(title_text="side", tickvals=[-1, 0, 1], ticktext=["short", "flat", "long"],
                         range=[-1.3, 1.3], row=3, col=1)
    else:
        fig.update_yaxes(title_text="side (long up)", tickvals=[-k for k in range(len(groups))],
                         ticktext=[symbol for symbol, _ in groups], range=[0.5 - len(groups), 0.5], row=3, col=1)
    return fig.update_layout(LAYOUT, height=500)


def candles(bars: pd.DataFrame, fills: pd.DataFrame, n: int) -> go.Figure:
    """The newest `n` candles of one symbol's `bars` with its `fills` among them marked at their
    price (each fills at the open of its candle): buys as green triangles up, sells as red triangles
    down."""
    tail = bars.iloc[-n:]
    fig = go.Figure()
    if tail.empty:
        return fig.update_layout(LAYOUT)
    fig.add_trace(go.Candlestick(x=_utc(tail["time"]), open=tail["open"], high=tail["high"], low=tail["low"],
                                 close=tail["close"], name="candles", increasing_line_color=UP,
                                 decreasing_line_color=DOWN))
    shown = fills[fills["time"] >= tail["time"].iloc[0]]
    for side, marker in FILLS.items():
        f = shown[shown["side"] == side]
        fig.add_trace(go.Scatter(x=_utc(f["time"]), y=f["price"], mode="markers", name=f"{side} fill",
                                 marker={**marker, "size": 11, "line": {"width": 1, "color": "black"}}))
    return fig.update_layout(LAYOUT, height=420, xaxis_rangeslider_visible=False)


def png(image: np.ndarray) -> str:
    """A uint8 chart (C, H, W) with 1 or 3 channels as a data: URL of a PNG (no file, no server route)."""
    from PIL import Image

    pixels = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
