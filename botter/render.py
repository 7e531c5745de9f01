"""Chart rendering: candles -> the uint8 images the CNN reads.

Two renderers behind `render()`:

- `ohlc`: the bar charts of Jiang, Kelly & Xiu, "(Re-)Imag(in)ing Price Trends". Black background,
  white pixels, 3 px per candle (open tick in the left column, high-low bar in the middle column,
  close tick in the right column), prices scaled per window from the window's low to its high
  (and the moving average's, when drawn), an optional moving-average line through the middle
  columns and an optional volume panel in the bottom fifth under a 1-px gap. One torch
  implementation (`ohlc_images`) renders all windows at once, on the CPU for `render()` and on a
  GPU when the candles already live there.
- `mplfinance`: real candlestick charts drawn by mplfinance, one figure per window (slow).

Window i ends at candle i + window - 1, or at candle ends[i]. An image uses only its window's
candles and, for the moving average, the candles just before it: never a later candle.
"""

import functools
import logging

import numpy as np
import pandas as pd
import torch

from botter.errors import BotterError

COLUMNS = ["open", "high", "low", "close", "volume"]

# The fewest price rows that draw a bar: its high, open, close and low each on a row of its own
# (with fewer, the open and close ticks land on the bar's ends and the chart no longer shows where
# the candle opened and closed within its range). Rows are numbered in uint8: 255 at most.
MIN_PRICE_ROWS = 4
MAX_PRICE_ROWS = 255


def lookback(window: int, ma: int | None = None) -> int:
    """Candles one image reads: the window plus the history its moving average needs."""
    return window + max(int(ma or 0) - 1, 0)


def render(
    candles: pd.DataFrame,
    window: int,
    *,
    name: str,
    height: int,
    width: int,
    channels: int,
    ends=None,
    **options,
) -> np.ndarray:
    """Render windows of `candles` into images, uint8 (N, channels, height, width).

    candles: Candles frame (UTC DatetimeIndex `time`; open, high, low, close, volume).
    window: candles per image. ends: candle index (0-based) of each window's last candle;
    default every full window, ends = window-1 .. len(candles)-1.
    name: "ohlc" or "mplfinance"; options are the extra keys of configs/render/<name>.yaml:
    ohlc: ma (moving-average length in candles, or None), volume (bool), see `ohlc_images`;
    mplfinance: the same plus style (an mplfinance style name).
    Raises BotterError for a window with a missing, non-positive or inconsistent candle.
    """
    if name not in RENDERERS:
        raise BotterError(f"render.name={name!r} is not one of: {', '.join(RENDERERS)}")
    expected = 1 if name == "ohlc" else 3
    if channels != expected:
        raise BotterError(f"render.channels={channels} but the {name} renderer draws {expected}: set it")
    missing = [c for c in COLUMNS if c not in candles.columns]
    if missing:
        raise BotterError(f"candles lack the columns {missing}: pass a Candles frame (botter.data.load)")
    if not 1 <= window <= len(candles):
        raise BotterError(f"data.window={window}: a chart holds 1 to {len(candles)} candles here (the candles given)")
    check_size(name, height=height, width=width, window=window, volume=options.get("volume", True))
    ends = np.arange(window - 1, len(candles)) if ends is None else np.asarray(ends, dtype=np.int64)
    if ends.size and (ends.min() < window - 1 or ends.max() >= len(candles)):
        raise BotterError(
            f"ends must lie in [window-1, len(candles)-1] = [{window - 1}, {len(candles) - 1}], "
            f"got {ends.min()}..{ends.max()}"
        )
    return RENDERERS[name](candles, window, ends, height=height, width=width, **options)


def check_size(name: str, *, height: int, width: int, window: int, volume: bool = True) -> None:
    """Raise BotterError, with the fix, unless renderer `name` can draw `window` candles as bars in
    a height x width image (the keys of configs/render/<name>.yaml and data.window).

    ohlc: 3 px per candle, and a height in `ohlc_heights(volume)`. mplfinance: 1 px or more per
    candle, and no less height than the smallest ohlc bar (its own panels are no smaller).
    """
    if window < 1:
        raise BotterError(f"data.window={window}: a chart holds at least 1 candle; set data.window to 1 or more")
    sizes, other = ohlc_heights(volume), ohlc_heights(not volume)
    if height < sizes.start or (name == "ohlc" and height >= sizes.stop):
        price_rows, vol_rows = ohlc_rows(height, volume)
        why = (f"ohlc numbers its rows in uint8, {MAX_PRICE_ROWS} price rows at most" if height >= sizes.stop else
               f"a bar needs {MIN_PRICE_ROWS} price rows (high, open, close and low each on a row of its own)"
               + (" and a volume panel (the bottom fifth, under a 1-px gap) of 1 row or more" if volume else ""))
        fix = (f"{sizes.start}..{sizes.stop - 1} (render.volume={str(not volume).lower()}: {other.start}..{other.stop - 1})"
               if name == "ohlc" else f"{sizes.start} or more")
        raise BotterError(f"render.height={height} leaves {price_rows} price rows"
                          + (f" and {vol_rows} volume rows" if volume else "") + f": {why}; set render.height to {fix}")
    if name == "ohlc" and width != 3 * window:
        raise BotterError(f"render.width={width} but ohlc draws 3 px per candle: set render.width={3 * window}")
    if width < window:
        raise BotterError(f"render.width={width} leaves less than 1 px for each of {window} candles: "
                          f"set render.width to {window} or more")


def ohlc_rows(height: int, volume: bool) -> tuple[int, int]:
    """(price rows, volume rows) of an ohlc image: the volume panel is the bottom fifth, under a 1-px gap."""
    vol_rows = height // 5 if volume else 0
    return (height - vol_rows - 1 if volume else height), vol_rows


@functools.cache  # checked on every batch drawn in the training step
def ohlc_heights(volume: bool) -> range:
    """The heights in which ohlc draws a bar: MIN_PRICE_ROWS..MAX_PRICE_ROWS price rows and, with
    volume, at least one volume row: 6..320 px with volume, 4..255 without."""
    ok = [h for h in range(1, 2 * MAX_PRICE_ROWS) if MIN_PRICE_ROWS <= ohlc_rows(h, volume)[0] <= MAX_PRICE_ROWS
          and (ohlc_rows(h, volume)[1] >= 1 or not volume)]
    return range(ok[0], ok[-1] + 1)


def _render_ohlc(candles, window, ends, *, height, width, ma=None, volume=True) -> np.ndarray:
    prices = torch.tensor(candles[COLUMNS].to_numpy(np.float64))  # (T, 5)
    images = ohlc_images(
        prices, torch.from_numpy(ends), window, height=height, ma=ma, volume=volume, times=candles.index
    )
    return images.numpy()


def ohlc_images(prices, ends, window: int, *, height: int, ma=None, volume=True, times=None, chunk=None,
                check: bool = True):
    """Jiang-Kelly-Xiu bar charts as a uint8 tensor (N, 1, height, 3*window) on prices' device.

    prices: (T, 5) float tensor of open, high, low, close, volume (any device). ends: (N,) int64
    tensor, candle index of each window's last candle (>= window-1). height: pixels (rows).
    ma: moving-average length in candles (of the close, drawn through the middle columns from the
    candles up to each column's candle), or None. volume: draw the volume panel in the bottom
    fifth under a 1-px gap, bars scaled by the window's largest volume.
    times: optional labels of the T candles, used in error messages only. chunk: windows per
    step; by default about 4 MiB of image on the CPU (stays in cache), everything on a GPU.
    check: look for bad candles first (an O(T) pass: a caller that renders many batches of the same
    prices checks them once, with `check_windows`, and passes False).
    Raises BotterError naming the first window that holds a bad candle.
    """
    ma = int(ma) if ma else 0
    reads = lookback(window, ma)
    check_size("ohlc", height=height, width=3 * window, window=window, volume=volume)
    price_rows, vol_rows = ohlc_rows(height, volume)
    if check:
        check_windows(prices, ends, reads, times)
    if chunk is None:
        chunk = max(1, len(ends) if prices.is_cuda else (4 << 20) // (height * 3 * window))
    out = torch.empty((len(ends), 1, height, 3 * window), dtype=torch.uint8, device=prices.device)
    out[:, :, price_rows:] = 0  # gap and volume panel; the price rows are all written below
    dev = prices.device
    rows = torch.arange(price_rows, dtype=torch.uint8, device=dev)[:, None]  # (P, 1)
    vrows = torch.arange(vol_rows, 0, -1, dtype=torch.uint8, device=dev)[:, None]  # (V, 1)
    # Where the MA line meets each column's left edge x - 0.5 (and the last column's right edge),
    # in candles: between MA points j and j+1, `past` of the way.
    edge = ((torch.arange(3 * window + 1, device=dev) - 1.5) / 3).clamp(0, window - 1)  # (3W+1,)
    j = edge.floor().long()
    past = edge - j
    for s in range(0, len(ends), chunk):
        e = ends[s : s + chunk]
        idx = e[:, None] + torch.arange(1 - reads, 1, device=dev)  # (n, L)
        g = prices[idx.clamp(min=0)]  # (n, L, 5)
        o, h, l, c, v = g[:, -window:].unbind(-1)  # (n, W) each
        lo, hi = l.amin(1), h.amax(1)  # (n,)
        if ma:
            line = g[:, :, 3].unfold(1, ma, 1).mean(-1)  # (n, W): MA at each candle of the window
            line = line.masked_fill(idx[:, ma - 1 :] < ma - 1, float("nan"))  # too little history
            known = ~line.isnan()
            lo = torch.minimum(lo, line.masked_fill(~known, float("inf")).amin(1))
            hi = torch.maximum(hi, line.masked_fill(~known, float("-inf")).amax(1))
        span = hi - lo
        # One lit interval of rows per column, as its top row and length - 1: open tick, high-low
        # bar, close tick.
        top = _round(_to_row(torch.stack([o, h, c], -1).flatten(1), hi, span, price_rows))  # (n, 3W)
        length = _round(_to_row(torch.stack([o, l, c], -1).flatten(1), hi, span, price_rows)) - top  # (n, 3W)
        lit = _within(rows, top, length)  # (n, P, 3W)
        if ma:
            # The line joins the MA points at the middle columns 3j+1: each column lights the rows
            # the line crosses between its left and right edge (x -/+ 0.5), so it stays connected.
            ext = torch.cat([line, line[:, -1:]], 1)  # (n, W+1)
            at = ext[:, j] + (ext[:, j + 1] - ext[:, j]) * past  # (n, 3W+1) MA at each edge
            r = _to_row(at, hi, span, price_rows)
            # fmin/fmax skip a NaN edge: the line starts at the first MA point that has history.
            a, b = torch.fmin(r[:, :-1], r[:, 1:]), torch.fmax(r[:, :-1], r[:, 1:])  # (n, 3W)
            drawn = ~a.isnan()
            # top 255 with length 0 lights no row of the (<= 255) price rows: an empty interval
            a, b = _round(a.nan_to_num(0)).masked_fill(~drawn, 255), _round(b.nan_to_num(0))
            lit |= _within(rows, a, (b - a).masked_fill(~drawn, 0))
        torch.mul(lit.view(torch.uint8), 255, out=out[s : s + chunk, 0, :price_rows])
        if volume:
            vmax = v.amax(1, keepdim=True)  # (n, 1)
            bar = _round(v / vmax.masked_fill(vmax <= 0, 1) * vol_rows)  # (n, W)
            vlit = vrows <= bar[:, None]  # (n, V, W): the bar rises from the bottom row
            out[s : s + chunk, 0, price_rows + 1 :, 1::3] = vlit.view(torch.uint8).mul_(255)
    return out


def _to_row(p, hi, span, price_rows):
    """Price (n, k) -> fractional row, 0 = top = the window high (n,) of range span (n,); a flat
    window (span 0) sits at mid-height. Multiplying before dividing keeps exact cases exact."""
    flat = (span <= 0)[:, None]
    scaled = (hi[:, None] - p) * (price_rows - 1) / span[:, None].masked_fill(flat, 1)
    return torch.where(flat, (price_rows - 1) / 2, scaled)


def _round(x):
    """Fractional rows -> uint8 rows; halves round down the image (torch.round goes half to even)."""
    return (x + 0.5).floor().to(torch.uint8)


def _within(rows, top, length):
    """Bool (n, P, 3W): rows r with top <= r <= top + length, for uint8 rows (P, 1), top and
    length (n, 3W). One uint8 subtraction that wraps below top and one compare do both bounds."""
    return (rows - top[:, None]) <= length[:, None]


def bad_candles(prices: torch.Tensor) -> torch.Tensor:
    """(T,) bool: the candles of `prices` (T, 5) no chart can be drawn from: non-finite, non-positive
    low, high < low, open or close outside [low, high], negative volume."""
    o, h, l, c, v = prices.unbind(-1)
    bad = (l <= 0) | (h < l) | (o < l) | (o > h) | (c < l) | (c > h) | (v < 0)  # (T,)
    for column in (o, h, l, c, v):  # column by column: no (T, 5) temporary
        bad |= ~column.isfinite()
    return bad


def check_windows(prices, ends, reads: int, times=None) -> None:
    """Raise BotterError for the first window (ending at candle `ends[i]`, reading `reads` candles)
    that reads a bad candle of `prices` (T, 5) (`bad_candles`)."""
    bad = bad_candles(prices)  # (T,)
    count = bad.to(torch.int32).cumsum(0, dtype=torch.int32)  # (T,) bad candles up to each one
    for s in range(0, len(ends), 1 << 20):  # in chunks: the temporaries stay small for 10 M windows
        e = ends[s : s + (1 << 20)]
        first = (e - reads + 1).clamp(min=0)
        hits = count[e] - torch.where(first > 0, count[(first - 1).clamp(min=0)], 0) > 0  # (n,)
        if hits.any():
            break
    else:
        return
    j = int(hits.nonzero()[0, 0])
    i = s + j
    k = int(first[j]) + int(bad[first[j] : ends[i] + 1].nonzero()[0, 0])
    label = (lambda n: f"{times[n]}") if times is not None else (lambda n: f"candle {n}")
    raise BotterError(
        f"window {i} (ending {label(int(ends[i]))}) reads a bad candle at {label(k)}: "
        f"{dict(zip(COLUMNS, prices[k].tolist()))} (prices must be finite and positive, "
        f"low <= open, close <= high, volume >= 0): repair or drop it (botter.data.validate)"
    )


def _render_mplfinance(
    candles, window, ends, *, height, width, ma=None, volume=True, style="charles", dpi=100
):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplfinance as mpf

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    if isinstance(style, str) and style not in mpf.available_styles():
        raise BotterError(
            f"render.style={style!r} is not one of mplfinance's: {', '.join(mpf.available_styles())}"
        )
    reads = lookback(window, ma)
    prices = torch.tensor(candles[COLUMNS].to_numpy(np.float64))
    check_windows(prices, torch.from_numpy(ends), reads, candles.index)
    line = candles["close"].rolling(ma).mean() if ma else None  # causal: candles up to t only
    out = np.empty((len(ends), 3, height, width), dtype=np.uint8)
    for i, e in enumerate(ends):
        part = candles.iloc[e - window + 1 : e + 1]
        extra = {}
        if ma and line.iloc[e - window + 1 : e + 1].notna().any():
            extra["addplot"] = mpf.make_addplot(line.iloc[e - window + 1 : e + 1], color="tab:blue", width=1)
        fig, _ = mpf.plot(
            part,
            type="candle",
            style=style,
            volume=volume,
            axisoff=True,
            returnfig=True,
            figsize=(width / dpi, height / dpi),
            tight_layout=True,
            scale_padding=0.05,
            warn_too_much_data=window + 1,
            **extra,
        )
        fig.set_dpi(dpi)
        fig.canvas.draw()
        rgb = np.asarray(fig.canvas.buffer_rgba())[:, :, :3]  # (h, w, 3), h/w may be off by one
        plt.close(fig)
        ys = np.arange(height) * rgb.shape[0] // height
        xs = np.arange(width) * rgb.shape[1] // width
        out[i] = rgb[ys][:, xs].transpose(2, 0, 1)
    return out


def preview(candles: pd.DataFrame, window: int, ends, renders: list[dict], path) -> None:
    """Write a PNG grid: one row per window (labelled with its first and last candle's open time,
    UTC), one column per render config in `renders` (each a dict of render() keyword arguments)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ends = np.asarray(ends, dtype=np.int64)
    images = [render(candles, window, ends=ends, **r) for r in renders]  # each (N, C, H, W)
    fig, axes = plt.subplots(
        len(ends), len(renders), figsize=(3.2 * len(renders), 2.4 * len(ends)), squeeze=False
    )
    for i, e in enumerate(ends):
        start, stop = candles.index[e - window + 1], candles.index[e]
        for k, (r, im) in enumerate(zip(renders, images)):
            ax = axes[i, k]
            ax.imshow(
                im[i].transpose(1, 2, 0).squeeze(-1) if im.shape[1] == 1 else im[i].transpose(1, 2, 0),
                cmap="gray",
                vmin=0,
                vmax=255,
                interpolation="nearest",
                aspect="auto",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{r['name']} {r['height']}x{r['width']}", fontsize=8)
        axes[i, 0].set_ylabel(f"{start:%Y-%m-%d %H:%M}\nto {stop:%H:%M} UTC", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


RENDERERS = {"ohlc": _render_ohlc, "mplfinance": _render_mplfinance}
