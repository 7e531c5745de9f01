"""Windows of candles -> (image, label) samples, a purged chronological split, and an image cache.

Label (the exact definition; README quotes it). For a window whose last candle opens at time t
(the decision time, known at the close of t), the label return is

    r = open[t + (1 + horizon) * timeframe] / open[t + timeframe] - 1

the return of a position opened at the OPEN of the candle after the window and closed at the open
`horizon` candles later: the backtest's fill rule with no fee. Classes, in column order:
  - classes=2: 0 = down (r <= 0), 1 = up (r > 0);
  - classes=3: 0 = down (r < -flat_threshold), 1 = flat (|r| <= flat_threshold), 2 = up (r > flat_threshold).
A window is kept only when every candle from its first (or the first the renderer's moving
average reads) to the exit candle is present: a gap in the candles anywhere in that span drops it.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

import botter.render
from botter.atomic import atomic_path
from botter.data.candles import timeframe_ms, to_ms
from botter.errors import BotterError
from botter.render import render as render_windows

CLASS_NAMES = {2: ("down", "up"), 3: ("down", "flat", "up")}
SPLITS = ("train", "val", "test")
_CHUNK = 2048  # windows rendered per call, so the progress bar moves


@dataclass
class Windows:
    """Samples, one per window, in symbol order then time order."""

    images: np.ndarray  # (N, C, H, W) uint8
    labels: np.ndarray  # (N,) int64 class index (see CLASS_NAMES)
    returns: np.ndarray  # (N,) float64 label return r
    past_returns: np.ndarray  # (N,) float64 the window's own return close[t] / open[first] - 1
    times: np.ndarray  # (N,) datetime64[ns], UTC open time of the window's last candle (decision time)
    symbols: np.ndarray  # (N,) object, the symbol of each window

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index) -> "Windows":
        """The samples at `index` (a boolean mask or integer positions)."""
        return Windows(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def labels_from_returns(returns: np.ndarray, *, classes: int, flat_threshold: float = 0.0) -> np.ndarray:
    """Class index of each label return (see the module docstring), int64."""
    if classes == 2:
        return (returns > 0).astype(np.int64)
    if classes == 3:
        if flat_threshold < 0:
            raise BotterError(f"dataset.flat_threshold={flat_threshold} must be >= 0 (a return, 0.001 = 0.1%)")
        return np.where(returns > flat_threshold, 2, np.where(returns < -flat_threshold, 0, 1)).astype(np.int64)
    raise BotterError(f"data.classes={classes} must be 2 (down/up) or 3 (down/flat/up)")


def window_ends(times: pd.DatetimeIndex, *, lookback: int, horizon: int, timeframe: str) -> np.ndarray:
    """Index of the last candle of every window that can be labelled, int64.

    lookback: candles an image reads (the window, plus the moving average's history). A window
    ending at candle e is kept when candles e-lookback+1 .. e+1+horizon are all present and
    consecutive (no gap in the times).
    """
    if lookback < 1 or horizon < 1:
        raise BotterError(f"window={lookback} and horizon={horizon} must both be >= 1 candle")
    step = timeframe_ms(timeframe) * 1_000_000  # ns per candle
    t = times.as_unit("ns").asi8
    ends = np.arange(lookback - 1, len(t) - 1 - horizon)
    span = t[ends + 1 + horizon] - t[ends - lookback + 1]
    return ends[span == (lookback + horizon) * step]


def build(
    candles: dict[str, pd.DataFrame],
    *,
    window: int,
    horizon: int,
    classes: int,
    timeframe: str,
    render: dict,
    flat_threshold: float = 0.0,
    cache_dir=None,
    progress: bool = True,
) -> Windows:
    """All labelled windows of all symbols, rendered with `render(df, window, **render, ends=...)`.

    candles: {symbol: Candles frame}. horizon: label horizon in candles. render: the render
    config (name, height, width, channels and the renderer's options). cache_dir: when given,
    images are read from / written to `<cache_dir>/windows/` keyed by a hash of the candles, the
    render config, the window and the renderer's code, so a second build does not render.
    """
    lookback = botter.render.lookback(window, render.get("ma"))
    bar = tqdm(total=0, desc="render", unit="win", disable=not progress, leave=False, delay=0.5)
    parts = []
    for symbol, df in candles.items():
        if len(df) < lookback + horizon + 1:
            raise BotterError(
                f"{symbol}: {len(df)} candles are too few for window={window} + horizon={horizon}: "
                "load a longer range (data.start / data.end)"
            )
        ends = window_ends(df.index, lookback=lookback, horizon=horizon, timeframe=timeframe)
        images = _images(df, window, render, ends, cache_dir, symbol, bar)
        opens = df["open"].to_numpy(np.float64)
        returns = opens[ends + 1 + horizon] / opens[ends + 1] - 1
        past = df["close"].to_numpy(np.float64)[ends] / opens[ends - window + 1] - 1
        parts.append(
            Windows(
                images=images,
                labels=labels_from_returns(returns, classes=classes, flat_threshold=flat_threshold),
                returns=returns,
                past_returns=past,
                times=df.index.tz_convert("UTC").tz_localize(None).to_numpy("datetime64[ns]")[ends],
                symbols=np.full(len(ends), symbol, dtype=object),
            )
        )
    bar.close()
    return Windows(*(np.concatenate([getattr(p, f) for p in parts]) for f in Windows.__dataclass_fields__))


def cache_key(df: pd.DataFrame, window: int, render: dict, ends: np.ndarray) -> str:
    """Hash of everything an image depends on: the candles, window, render config, ends, renderer code."""
    h = hashlib.sha256()
    h.update(df.index.as_unit("ns").asi8.tobytes())
    h.update(np.ascontiguousarray(df[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)).tobytes())
    h.update(np.ascontiguousarray(ends, dtype=np.int64).tobytes())
    h.update(json.dumps({"window": window, "render": render}, sort_keys=True, default=str).encode())
    h.update(Path(botter.render.__file__).read_bytes())
    return h.hexdigest()[:24]


def _images(df, window, render, ends, cache_dir, symbol, bar) -> np.ndarray:
    path = None
    if cache_dir is not None:
        name = re.sub(r"[^A-Za-z0-9]+", "-", symbol)
        path = Path(cache_dir) / "windows" / f"{name}-{window}-{cache_key(df, window, render, ends)}.npy"
        if path.exists():
            return np.load(path)
    bar.total += len(ends)
    bar.refresh()
    chunks = []
    for s in range(0, len(ends), _CHUNK):
        chunks.append(render_windows(df, window, **render, ends=ends[s : s + _CHUNK]))
        bar.update(len(chunks[-1]))
    images = np.concatenate(chunks) if chunks else np.zeros((0, render["channels"], render["height"], render["width"]), np.uint8)
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, images)
    return images


def split(
    times: np.ndarray,
    *,
    timeframe: str,
    horizon: int,
    purge: int | None = None,
    train: float = 0.7,
    val: float = 0.15,
    val_start=None,
    test_start=None,
) -> np.ndarray:
    """Assign each decision time to train (0), val (1), test (2) or purged (-1), int8.

    The split is by time across all symbols: by the dates `val_start` and `test_start` (UTC, the
    first decision time of val / test) when both are given, else by the fractions `train` and
    `val` of the distinct decision times (test gets the rest). The last `purge` (>= horizon)
    candles before each boundary are dropped, so the exit open of every train label is at or
    before the first val decision time (and likewise val before test): no label straddles two splits.
    """
    purge = horizon if purge is None else purge
    if purge < horizon:
        raise BotterError(f"dataset.split.purge={purge} must be >= data.horizon={horizon} candles")
    step = np.timedelta64(timeframe_ms(timeframe), "ms")
    times = np.asarray(times, dtype="datetime64[ns]")
    if (val_start is None) != (test_start is None):
        raise BotterError("give both dataset.split.val_start and test_start (dates), or neither (fractions)")
    if val_start is not None:
        b1, b2 = (np.datetime64(to_ms(d), "ms").astype("datetime64[ns]") for d in (val_start, test_start))
        if not b1 < b2:
            raise BotterError(f"dataset.split.val_start={val_start} must be before test_start={test_start}")
    else:
        if not (0 < train and 0 < val and train + val < 1):
            raise BotterError(
                f"dataset.split fractions train={train}, val={val} must be > 0 and leave some for test (sum < 1)"
            )
        distinct = np.unique(times)
        b1, b2 = distinct[int(train * len(distinct))], distinct[int((train + val) * len(distinct))]
    out = np.full(len(times), -1, dtype=np.int8)
    out[times < b1 - purge * step] = 0
    out[(times >= b1) & (times < b2 - purge * step)] = 1
    out[times >= b2] = 2
    for i, name in enumerate(SPLITS):
        if not (out == i).any():
            raise BotterError(
                f"the {name} split is empty ({len(times)} windows): use a longer data range or other split settings"
            )
    return out


def class_balance(windows: Windows, assignment: np.ndarray, classes: int) -> pd.DataFrame:
    """Samples per class in each split: rows train/val/test, columns the class names, plus n and a share."""
    rows = {}
    for i, name in enumerate(SPLITS):
        counts = np.bincount(windows.labels[assignment == i], minlength=classes)
        rows[name] = dict(zip(CLASS_NAMES[classes], counts), n=counts.sum())
    table = pd.DataFrame(rows).T
    for c in CLASS_NAMES[classes]:
        table[f"{c} %"] = (100 * table[c] / table["n"]).round(1)
    return table
