"""Windows of candles -> samples (a chart and its label), the purged chronological split.

The dataset holds the candles, once, and the index of each window's last candle; the charts are
drawn per batch, from the candles, on the device that reads them (`Windows.images`). Memory grows
with the candles, not with the windows. Only the mplfinance renderer, far too slow to draw in a
training step, keeps its images (cached on disk under paths.cache_dir).

Decisions. A window ending at candle t (its decision time, known at the close of t) exists for
every candle whose `lookback` candles up to t are consecutive in trading time (botter.data.hours):
whatever comes after t, even whether later candles exist, changes nothing about it.

Label (the exact definition; README quotes it). The label return of the window ending at t is

    r = open[t + 1 + horizon] / open[t + 1] - 1      (candles counted in trading time)

the return of a position opened at the OPEN of the candle after the window and closed at the open
`horizon` candles later: the backtest's fill rule with no fee. Classes, in column order:
  - classes=2: 0 = down (r <= 0), 1 = up (r > 0);
  - classes=3: 0 = down (r < -flat_threshold), 1 = flat (|r| <= flat_threshold), 2 = up (r > flat_threshold).
The label is known when the 1 + horizon candles after t are there and consecutive; otherwise it is
-1: such a window is decided on (predictions, backtest, paper) but neither trained nor scored.
"""

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import botter.render
from botter.atomic import atomic_path
from botter.data import hours as market_hours
from botter.data.candles import to_ms
from botter.errors import BotterError
from botter.progress import bar as progress_bar
from botter.render import bad_candles, ohlc_images
from botter.render import render as render_windows

log = logging.getLogger(__name__)

CLASS_NAMES = {2: ("down", "up"), 3: ("down", "flat", "up")}
SPLITS = ("train", "val", "test")
COLUMNS = ["open", "high", "low", "close", "volume"]
_CHUNK = 256  # windows per mplfinance call, so the progress bar moves


@dataclass
class CandleTable:
    """The candles of every symbol, back to back: what the charts are drawn from.

    prices: (T, 5) float64 open, high, low, close, volume. times: (T,) int64 open times, epoch ms UTC.
    offsets: (S + 1,) where each symbol's candles start (and the end). names: the S symbols.
    """

    prices: torch.Tensor
    times: np.ndarray
    offsets: np.ndarray
    names: tuple[str, ...]
    _on: dict = field(default_factory=dict, repr=False)

    def prices_on(self, device) -> torch.Tensor:
        """The prices on `device`, copied there once."""
        device = torch.device(device or "cpu")
        if device.type == "cpu":
            return self.prices
        if device not in self._on:
            self._on[device] = self.prices.to(device)
        return self._on[device]


@dataclass
class Windows:
    """Samples, one per window, in symbol order then time order.

    table: the candles. ends: (N,) int64 index in table.prices of each window's last candle.
    labels: (N,) int8 class index (CLASS_NAMES), -1 where the label is unknown.
    cached: (N, C, H, W) uint8 images for a renderer too slow to draw per batch, else None.
    """

    table: CandleTable
    ends: np.ndarray
    labels: np.ndarray
    window: int
    horizon: int
    render: dict
    cached: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ends)

    def take(self, index) -> "Windows":
        """The samples at `index` (a boolean mask or integer positions); the candles are shared."""
        return replace(self, ends=self.ends[index], labels=self.labels[index],
                       cached=None if self.cached is None else self.cached[index])

    def labelled(self) -> "Windows":
        """The samples whose label is known."""
        return self.take(self.labels >= 0)

    @property
    def times(self) -> np.ndarray:
        """(N,) datetime64[ns]: the open time of each window's last candle, its decision time (UTC)."""
        return (self.table.times[self.ends] * 1_000_000).astype("datetime64[ns]")

    @property
    def symbol_index(self) -> np.ndarray:
        """(N,) int: the index in table.names of each window's symbol."""
        return np.searchsorted(self.table.offsets, self.ends, side="right") - 1

    @property
    def symbols(self) -> np.ndarray:
        """(N,) object: the symbol of each window."""
        return np.asarray(self.table.names, dtype=object)[self.symbol_index]

    def _opens(self, k: np.ndarray) -> np.ndarray:
        """The open of candle ends + k (clamped to the table; only read where it exists)."""
        i = np.minimum(self.ends + k, len(self.table.times) - 1)
        return self.table.prices[:, 0].numpy()[i]

    def returns(self) -> np.ndarray:
        """(N,) float64 label return r (module docstring), NaN where the label is unknown."""
        r = self._opens(1 + self.horizon) / self._opens(1) - 1
        return np.where(self.labels >= 0, r, np.nan)

    def past_returns(self) -> np.ndarray:
        """(N,) float64: the window's own return, close of its last candle / open of its first - 1."""
        close = self.table.prices[:, 3].numpy()[self.ends]
        return close / self._opens(1 - self.window) - 1

    def exits(self, purge: int) -> np.ndarray:
        """(N,) datetime64[ns]: the open time of the candle `1 + purge` candles after each window's
        last one in its symbol (where the label of a `purge`-candle horizon is settled); NaT past
        the symbol's last candle."""
        if purge < self.horizon:
            raise BotterError(f"dataset.split.purge={purge} must be >= data.horizon={self.horizon} candles")
        i = self.ends + 1 + purge
        out = (self.table.times[np.minimum(i, len(self.table.times) - 1)] * 1_000_000).astype("datetime64[ns]")
        out[i >= self.table.offsets[self.symbol_index + 1]] = np.datetime64("NaT")
        return out

    def images(self, index=None, device=None) -> torch.Tensor:
        """The charts of the samples at `index` (default all), uint8 (B, C, H, W) on `device`.

        The ohlc renderer draws them from the candles, on `device`, with the same function as
        `botter.render.render` (bit for bit the same images, tested); mplfinance's are cached.
        """
        index = np.arange(len(self)) if index is None else index
        if self.cached is not None:
            return torch.from_numpy(np.ascontiguousarray(self.cached[index])).to(device or "cpu")
        prices = self.table.prices_on(device)
        ends = torch.as_tensor(self.ends[index], device=prices.device)
        r = self.render
        return ohlc_images(prices, ends, self.window, height=r["height"], ma=r.get("ma"),
                           volume=r.get("volume", True), check=False)


def labels_from_returns(returns: np.ndarray, *, classes: int, flat_threshold: float = 0.0) -> np.ndarray:
    """Class index of each label return (see the module docstring), int64."""
    if classes == 2:
        return (returns > 0).astype(np.int64)
    if classes == 3:
        if flat_threshold < 0:
            raise BotterError(f"dataset.flat_threshold={flat_threshold} must be >= 0 (a return, 0.001 = 0.1%)")
        return np.where(returns > flat_threshold, 2, np.where(returns < -flat_threshold, 0, 1)).astype(np.int64)
    raise BotterError(f"data.classes={classes} must be 2 (down/up) or 3 (down/flat/up)")


def decidable(ms: np.ndarray, *, lookback: int, horizon: int, timeframe: str, hours=None) -> tuple[np.ndarray, np.ndarray]:
    """(ends, known): the index of the last candle of every window that can be decided on, int64,
    and whether its label is known, bool.

    ms: candle open times (epoch ms, sorted, unique). lookback: candles a chart reads (the window
    plus the moving average's history). A window ending at candle e exists when candles
    e-lookback+1 .. e are consecutive in trading time; its label is known when candles e .. e+1+horizon
    are too. Nothing after e decides whether the window exists.
    """
    if lookback < 1 or horizon < 1:
        raise BotterError(f"data.window (a chart reads {lookback} candles) and data.horizon={horizon} must both be "
                          ">= 1 candle")
    pos = market_hours.positions(ms, timeframe, hours)
    ends = np.arange(lookback - 1, len(pos))
    ends = ends[pos[ends] - pos[ends - lookback + 1] == lookback - 1]
    after = np.minimum(ends + 1 + horizon, len(pos) - 1)
    known = (ends + 1 + horizon < len(pos)) & (pos[after] - pos[ends] == 1 + horizon)
    return ends, known


def build(
    candles: dict[str, pd.DataFrame],
    *,
    window: int,
    horizon: int,
    classes: int,
    timeframe: str,
    render: dict,
    hours=None,
    flat_threshold: float = 0.0,
    cache_dir=None,
    progress: bool = True,
    allow_empty: bool = False,
) -> Windows:
    """Every decidable window of every symbol, with its label where known.

    candles: {symbol: Candles frame}. horizon: label horizon in candles. render: the render config
    (name, height, width, channels and the renderer's options). hours: the market's weekly hours
    (botter.data.hours; None: it never closes). cache_dir: where mplfinance images are kept,
    keyed by a hash of everything they depend on (None: not kept).
    Raises BotterError, naming why, when a symbol yields no window (unless allow_empty).
    """
    if not candles:
        raise BotterError("no symbols to build windows from: give at least one, like data.symbols=[ETH/BTC]")
    if window < 1:
        raise BotterError(f"data.window={window} must be >= 1 candle")
    candles = chartable(candles)
    lookback = botter.render.lookback(window, render.get("ma"))
    total = sum(len(df) for df in candles.values())
    prices, times = np.empty((total, len(COLUMNS))), np.empty(total, np.int64)  # filled symbol by symbol
    ends, labels, start = [], [], 0
    for symbol, df in candles.items():
        ms = df.index.as_unit("ms").asi8
        e, known = decidable(ms, lookback=lookback, horizon=horizon, timeframe=timeframe, hours=hours)
        if len(e) == 0 and not allow_empty:
            raise BotterError(_no_windows(symbol, df, window, lookback, timeframe, hours))
        opens = df["open"].to_numpy(np.float64)
        k = e[known]
        label = np.full(len(e), -1, dtype=np.int8)
        label[known] = labels_from_returns(opens[k + 1 + horizon] / opens[k + 1] - 1, classes=classes,
                                           flat_threshold=flat_threshold)
        for j, column in enumerate(COLUMNS):
            prices[start : start + len(df), j] = df[column].to_numpy(np.float64)
        times[start : start + len(df)] = ms
        ends.append(e + start)
        labels.append(label)
        start += len(df)
    table = CandleTable(prices=torch.from_numpy(prices), times=times,
                        offsets=np.cumsum([0, *(len(df) for df in candles.values())]), names=tuple(candles))
    ends = np.concatenate(ends)
    if len(ends) == 0:
        return Windows(table, ends, np.zeros(0, np.int8), window, horizon, render,
                       None if render["name"] == "ohlc" else np.zeros((0, render["channels"], render["height"],
                                                                        render["width"]), np.uint8))
    # The render config is checked (and a slow renderer's images drawn) through botter.render.render.
    cached = _cached_images(candles, window, render, ends, table.offsets, cache_dir, progress)
    return Windows(table, ends, np.concatenate(labels), window, horizon, render, cached)


def chartable(candles: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """`candles` without the candles no chart can be drawn from (botter.render.bad_candles: an open or
    close outside [low, high], a price <= 0, ...), with a warning naming how many: the store keeps
    what its validation policy flags, and such a candle is then a missing one, a gap no window spans
    and no label reads across, in training, backtests and paper replays alike."""
    out = {}
    for symbol, df in candles.items():
        bad = bad_candles(torch.tensor(df[COLUMNS].to_numpy(np.float64))).numpy()  # (T,)
        if bad.any():
            times = df.index[bad]
            log.warning("%s: %d candle%s no chart can be drawn from (first at %s; open or close outside [low, high], "
                        "a price <= 0, ...) left out like missing candles: no window spans them", symbol, len(times),
                        "s" * (len(times) > 1), times[0])
            df = df[~bad]
        out[symbol] = df
    return out


def _no_windows(symbol, df, window, lookback, timeframe, hours) -> str:
    """Why a symbol yields no window, and what to change."""
    if len(df) < lookback:
        return (f"{symbol}: {len(df)} candles are fewer than the {lookback} one chart reads (data.window={window} "
                f"plus the moving average's history): load a longer range (data.start / data.end) or use a "
                "smaller data.window or render.ma")
    pos = market_hours.positions(df.index.as_unit("ms").asi8, timeframe, hours)
    runs = np.diff(np.flatnonzero(np.diff(np.r_[-2, pos, pos[-1] + 2]) != 1))
    return (f"{symbol}: no run of {lookback} consecutive candles (data.window={window} plus the moving "
            f"average's history): the data has {len(runs) - 1} gaps, its longest run is {runs.max()} candles "
            f"(market hours: {market_hours.describe(hours)}); use a smaller data.window or render.ma, "
            "data.hours=auto for a market that closes, or fill the holes (botter-fetch)")


def cache_key(df: pd.DataFrame, window: int, render: dict, ends: np.ndarray) -> str:
    """Hash of everything an image depends on: the candles, window, render config, ends, renderer code."""
    h = hashlib.sha256()
    h.update(df.index.as_unit("ns").asi8.tobytes())
    h.update(np.ascontiguousarray(df[COLUMNS].to_numpy(np.float64)).tobytes())
    h.update(np.ascontiguousarray(ends, dtype=np.int64).tobytes())
    h.update(json.dumps({"window": window, "render": render}, sort_keys=True, default=str).encode())
    h.update(Path(botter.render.__file__).read_bytes())
    return h.hexdigest()[:24]


def _cached_images(candles, window, render, ends, offsets, cache_dir, progress) -> np.ndarray | None:
    """The images of a renderer too slow to draw per batch (every one but ohlc), from the cache
    when there; None for ohlc (after checking its config)."""
    if render["name"] == "ohlc":  # checks the config; any symbol with windows has >= window candles
        render_windows(max(candles.values(), key=len), window, ends=np.zeros(0, np.int64), **render)
        return None
    bar = progress_bar(total=len(ends), desc=f"render {render['name']}", unit="win", show=progress, leave=False,
               delay=0.5)
    parts = []
    for i, (symbol, df) in enumerate(candles.items()):
        e = ends[(ends >= offsets[i]) & (ends < offsets[i + 1])] - offsets[i]
        path = None
        if cache_dir is not None:
            name = re.sub(r"[^A-Za-z0-9]+", "-", symbol)
            path = Path(cache_dir) / "windows" / f"{name}-{window}-{cache_key(df, window, render, e)}.npy"
            if path.exists():
                parts.append(np.load(path))
                bar.update(len(e))
                continue
        chunks = []
        for s in range(0, len(e), _CHUNK):
            chunks.append(render_windows(df, window, **render, ends=e[s : s + _CHUNK]))
            bar.update(len(chunks[-1]))
        images = np.concatenate(chunks)
        if path is not None:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, images)
        parts.append(images)
    bar.close()
    return np.concatenate(parts)


def split(
    times: np.ndarray,
    exits: np.ndarray,
    *,
    train: float = 0.7,
    val: float = 0.15,
    val_start=None,
    test_start=None,
) -> np.ndarray:
    """Assign each decision time to train (0), val (1), test (2) or purged (-1), int8.

    The split is by time across all symbols: by the dates `val_start` and `test_start` (UTC, the
    first decision time of val / test) when both are given, else by the fractions `train` and
    `val` of the distinct decision times (test gets the rest). exits: when each sample's label is
    settled (`Windows.exits(purge)`; NaT: never): a train sample is kept only when that is at or
    before the first val decision time, and likewise val before test, so no label straddles two
    splits.
    """
    times = np.asarray(times, dtype="datetime64[ns]")
    exits = np.asarray(exits, dtype="datetime64[ns]")
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
        if len(distinct) < 3:
            raise BotterError(f"{len(distinct)} decision times cannot be split three ways: load a longer data range")
        b1, b2 = distinct[int(train * len(distinct))], distinct[int((train + val) * len(distinct))]
    settled = ~np.isnat(exits)
    out = np.full(len(times), -1, dtype=np.int8)
    out[(times < b1) & settled & (exits <= b1)] = 0
    out[(times >= b1) & (times < b2) & settled & (exits <= b2)] = 1
    out[times >= b2] = 2
    return out


def check_splits(windows: Windows, assignment: np.ndarray) -> None:
    """Raise BotterError, naming the split and what to change, when train or val holds no labelled
    sample or test no sample."""
    for i, name in enumerate(SPLITS):
        mask = assignment == i
        n = int(mask.sum()) if name == "test" else int((mask & (windows.labels >= 0)).sum())
        if n == 0:
            times = windows.times
            raise BotterError(
                f"the {name} split is empty: {len(windows)} windows from {times.min()} to {times.max()} UTC; "
                "use a longer data range (data.start / data.end) or other dataset.split settings"
            )


def periods(windows: Windows, assignment: np.ndarray) -> dict:
    """Per symbol and split, the period it covers: [first decision time, last time its labels read]
    for train and val (what the model was fitted and early-stopped on), [first, last decision
    time] for test. Times are ISO strings (UTC)."""
    out = {}
    times, exits, symbols = windows.times, windows.exits(windows.horizon), windows.symbols
    for symbol in windows.table.names:
        spans = {}
        for i, name in enumerate(SPLITS):
            mask = (assignment == i) & (symbols == symbol)
            if name != "test":
                mask &= windows.labels >= 0
            if mask.any():
                last = times[mask].max() if name == "test" else exits[mask].max()
                spans[name] = [str(pd.Timestamp(times[mask].min(), tz="UTC")), str(pd.Timestamp(last, tz="UTC"))]
        out[symbol] = spans
    return out


def class_balance(windows: Windows, assignment: np.ndarray, classes: int) -> pd.DataFrame:
    """Labelled samples per class in each split: rows train/val/test, columns the class names, plus
    n, a share, and (test) the windows decided on without a known label."""
    rows = {}
    for i, name in enumerate(SPLITS):
        labels = windows.labels[assignment == i]
        counts = np.bincount(labels[labels >= 0], minlength=classes)
        rows[name] = dict(zip(CLASS_NAMES[classes], counts), n=counts.sum(), unlabelled=int((labels < 0).sum()))
    table = pd.DataFrame(rows).T
    for c in CLASS_NAMES[classes]:
        table[f"{c} %"] = (100 * table[c] / table["n"].clip(lower=1)).round(1)
    return table
