import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from PIL import Image

from botter.config import compose
from botter.data import load_sample
from botter.errors import BotterError
from botter.render import check_size, ohlc_images, render


def frame(rows):
    """Candles frame from (open, high, low, close, volume) rows, 5-minute UTC open times."""
    time = pd.date_range("2024-01-01", periods=len(rows), freq="5min", tz="UTC", name="time")
    return pd.DataFrame(
        np.asarray(rows, dtype=np.float64), index=time, columns=["open", "high", "low", "close", "volume"]
    )


def flat(prices, volume=1.0):
    """Doji candles open = high = low = close = p."""
    return frame([(p, p, p, p, volume) for p in prices])


def ohlc(df, window, height, **options):
    options = {"ma": None, "volume": False} | options
    return render(df, window, name="ohlc", height=height, width=3 * window, channels=1, **options)


def lit(image):
    """Set of (row, col) of the white pixels of one (1, H, W) image."""
    assert set(np.unique(image)) <= {0, 255}
    return {(int(r), int(c)) for r, c in np.argwhere(image[0] == 255)}


def test_pixels_of_known_candles():
    # Window low 10, high 20 on 11 rows: price p sits on row 20 - p.
    df = frame([(12, 15, 10, 13, 1), (13, 20, 11, 18, 1)])
    (image,) = ohlc(df, 2, 11)
    assert image.shape == (1, 11, 6) and image.dtype == np.uint8
    bar_a = {(r, 1) for r in range(5, 11)}  # high 15 .. low 10
    bar_b = {(r, 4) for r in range(10)}  # high 20 .. low 11
    assert lit(image) == {(8, 0), (7, 2), (7, 3), (2, 5)} | bar_a | bar_b


def test_each_window_is_scaled_from_its_low_to_its_high():
    df = load_sample("ETH/BTC")
    images = ohlc(df, 20, 32)
    assert images.shape == (len(df) - 19, 1, 32, 60)
    assert (images[:, 0, 0] == 255).any(1).all()  # the window high touches the top row
    assert (images[:, 0, -1] == 255).any(1).all()  # the window low touches the bottom row
    assert (images[:, 0, :, 1::3] == 255).any(1).all()  # every candle has its bar
    # Only relative prices matter (a power of two keeps the float arithmetic exact).
    scaled = df.copy()
    scaled[["open", "high", "low", "close"]] *= 1024
    np.testing.assert_array_equal(ohlc(scaled, 20, 32), images)


def test_windows_end_where_asked():
    df = load_sample("LTC/BTC").iloc[:300]
    every = ohlc(df, 10, 20)
    ends = np.array([9, 150, 299])
    np.testing.assert_array_equal(ohlc(df, 10, 20, ends=ends), every[ends - 9])


def test_volume_panel():
    # height 16: 12 price rows, the gap row 12, volume rows 13..15 (the bottom fifth, 3 rows).
    df = frame([(10, 11, 10, 11, 6), (11, 12, 11, 12, 2), (12, 12, 11, 11, 0)])
    (image,) = ohlc(df, 3, 16, volume=True)
    panel = {(r, c) for r, c in lit(image) if r >= 12}
    assert panel == {(13, 1), (14, 1), (15, 1), (15, 4)}  # 6 -> 3 rows, 2 -> 1 row, 0 -> none
    assert max(r for r, _ in lit(image) - panel) == 11  # the low sits on the last price row
    assert ohlc(frame([(10, 11, 10, 11, 0)] * 3), 3, 16, volume=True)[0, 0, 12:].max() == 0


def test_moving_average_line():
    # closes 10 10 22 22, ma 2: MA 10 16 22 over the window of the last three (flat) candles.
    # low 10, high 22 on 13 rows: price p on row 22 - p. Candles on rows 12, 0, 0.
    (image,) = ohlc(flat([10, 10, 22, 22]), 3, 13, ma=2, ends=[3])
    candles = {(12, c) for c in range(3)} | {(0, c) for c in range(3, 9)}
    # The line passes rows 12, 6, 0 at the middle columns 1, 4, 7; each column lights the rows
    # between the line's rows at its left and right edges: 12 12 11 9 7 5 3 1 0 0.
    line = {
        (12, 0),
        (11, 1),
        (12, 1),
        (9, 2),
        (10, 2),
        (11, 2),
        (7, 3),
        (8, 3),
        (9, 3),
        (5, 4),
        (6, 4),
        (7, 4),
        (3, 5),
        (4, 5),
        (5, 5),
        (1, 6),
        (2, 6),
        (3, 6),
        (0, 7),
        (1, 7),
        (0, 8),
    }
    assert lit(image) == candles | line


def test_moving_average_widens_the_price_range():
    # Window = the last two candles, both 10 (flat); the MA of 2 is 20 then 10.
    df = flat([30, 10, 10])
    assert lit(ohlc(df, 2, 11, ends=[2])[0]) == {(5, c) for c in range(6)}  # flat: mid-height
    with_ma = lit(ohlc(df, 2, 11, ma=2, ends=[2])[0])
    assert (0, 1) in with_ma and (10, 4) in with_ma  # MA 20 at the top, everything else at 10


def test_moving_average_needs_history():
    # The first candles have no full MA behind them: no line there, no error.
    (image,) = ohlc(flat([10, 20, 30]), 3, 11, ma=3)
    candles = {(10, 0), (10, 1), (10, 2), (5, 3), (5, 4), (5, 5), (0, 6), (0, 7), (0, 8)}
    assert lit(image) == candles | {(5, 7), (5, 8)}  # the one MA point, 20, from column 7's middle on


def test_flat_window_is_drawn_mid_height():
    (image,) = ohlc(flat([5, 5, 5], volume=0), 3, 16, volume=True, ma=2)
    assert lit(image) == {(6, c) for c in range(9)}  # 12 price rows: 5.5 rounds down to row 6


@pytest.mark.parametrize(
    "bad, what",
    [
        ((np.nan, 11, 9, 10, 1), "nan"),
        ((10, 11, 0, 10, 1), "low 0"),
        ((10, 9, 11, 10, 1), "high < low"),
        ((12, 11, 9, 10, 1), "open > high"),
        ((10, 11, 9, 10, -1), "negative volume"),
    ],
)
def test_bad_windows_are_rejected(bad, what):
    rows = [(10, 11, 9, 10, 1)] * 8
    rows[5] = bad
    df = frame(rows)
    with pytest.raises(
        BotterError,
        match=r"window 2 \(ending 2024-01-01 00:25:00\+00:00\) reads a bad candle at 2024-01-01 00:25",
    ):
        ohlc(df, 4, 16)
    with pytest.raises(BotterError, match="window 0"):
        render(df, 4, name="mplfinance", height=64, width=64, channels=3, ends=[5])
    assert ohlc(df, 4, 16, ends=[4]).shape == (1, 1, 16, 12)  # windows before it are fine
    assert ohlc(df, 2, 16, ends=[7]).shape == (1, 1, 16, 6)
    with pytest.raises(BotterError, match=r"bad candle at 2024-01-01 00:25"):
        ohlc(df, 2, 16, ma=3, ends=[7])  # the MA of the window's first candle reads it


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width": 59}, r"render.width=60"),
        ({"channels": 3}, "channels"),
        ({"name": "bars"}, "ohlc, mplfinance"),
        ({"height": 2}, "render.height"),
        ({"ends": [2]}, "ends must lie"),
    ],
)
def test_bad_arguments_say_what_to_set(kwargs, message):
    args = {"name": "ohlc", "height": 64, "width": 60, "channels": 1} | kwargs
    with pytest.raises(BotterError, match=message):
        render(load_sample("ETH/BTC"), 20, **args)


def test_the_smallest_images_draw_a_whole_bar():
    df = frame([(10.6, 11, 10, 10.3, 5)])  # high, open, close and low on rows 0, 1, 2 and 3 of 4
    bar = {(r, 1) for r in range(4)} | {(1, 0), (2, 2)}
    assert lit(ohlc(df, 1, 4)[0]) == bar
    assert lit(ohlc(df, 1, 6, volume=True)[0]) == bar | {(5, 1)}  # the gap row 4, the volume row 5
    assert ohlc(df, 1, 320, volume=True).shape[2] == 320 and ohlc(df, 1, 255).shape[2] == 255  # 255 price rows
    for height, volume, why in [(3, False, "a bar needs 4 price rows"), (5, True, "a volume panel"),
                                (256, False, "255 price rows at most"), (321, True, "255 price rows at most")]:
        with pytest.raises(BotterError, match=rf"render.height={height} leaves .*{why}.*set render.height to"):
            ohlc(df, 1, height, volume=volume)
    eth = load_sample("ETH/BTC").iloc[:40]
    with pytest.raises(BotterError, match=r"render.height=5 .* set render.height to 6 or more"):
        render(eth, 20, name="mplfinance", height=5, width=64, channels=3, ends=[30])
    with pytest.raises(BotterError, match="render.width=19 leaves less than 1 px for each of 20 candles"):
        render(eth, 20, name="mplfinance", height=64, width=19, channels=3, ends=[30])


def test_check_size_refuses_what_render_refuses():
    check_size("ohlc", height=64, width=60, window=20)
    with pytest.raises(BotterError, match="render.height=4 leaves 3 price rows and 0 volume rows"):
        check_size("ohlc", height=4, width=60, window=20)
    with pytest.raises(BotterError, match="data.window=-1: a chart holds at least 1 candle"):
        check_size("ohlc", height=64, width=-3, window=-1)


@pytest.mark.parametrize("height, width", [(240, 320), (64, 60), (101, 77)])
def test_mplfinance_exact_size(height, width):
    df = load_sample("XMR/BTC")
    images = render(df, 20, name="mplfinance", height=height, width=width, channels=3, ma=5, ends=[40, 41])
    assert images.shape == (2, 3, height, width) and images.dtype == np.uint8
    assert np.unique(images[0].reshape(3, -1), axis=1).shape[1] > 3  # candles drawn, not a blank canvas
    assert (images[0] != images[1]).any()


def test_mplfinance_sees_no_later_candle():
    df = load_sample("LTC/BTC").iloc[:60]
    later = df.copy()
    later.iloc[41:, :4] *= 1.5  # every candle after the window's end
    args = {"name": "mplfinance", "height": 64, "width": 64, "channels": 3, "ma": 10, "ends": [40]}
    np.testing.assert_array_equal(render(df, 20, **args), render(later, 20, **args))
    with pytest.raises(BotterError, match="render.style='nope'"):
        render(df, 20, **args, style="nope")


def test_configs_are_render_kwargs():
    cfg = compose("render", ["data.window=10"])
    df = load_sample("DASH/BTC").iloc[:40]
    for group in (cfg.render, cfg.compare):
        options = OmegaConf.to_container(group, resolve=True)
        images = render(df, cfg.data.window, ends=[20, 39], **options)
        assert images.shape == (2, options["channels"], options["height"], options["width"])


# low, high - low, where open and close sit in [low, high], volume
candle = st.tuples(
    st.floats(1, 100), st.floats(0, 10), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1e6)
).map(lambda x: (x[0] + x[2] * x[1], x[0] + x[1], x[0], x[0] + x[3] * x[1], x[4]))


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(candle, min_size=12, max_size=30),
    later=st.lists(candle, min_size=1, max_size=10),
    window=st.integers(1, 6),
    ma=st.sampled_from([None, 1, 3, 5]),
    volume=st.booleans(),
)
def test_no_look_ahead(rows, later, window, ma, volume):
    """Changing candles after a window's end never changes that window's image."""
    cut = len(rows) - len(later)
    changed = rows[:cut] + later
    ends = np.arange(window - 1, cut)
    if not len(ends):
        return
    before = ohlc(frame(rows), window, 21, ma=ma, volume=volume, ends=ends)
    after = ohlc(frame(changed), window, 21, ma=ma, volume=volume, ends=ends)
    np.testing.assert_array_equal(before, after)
    poisoned = frame(rows[:cut] + [(np.nan,) * 5] * len(later))
    np.testing.assert_array_equal(ohlc(poisoned, window, 21, ma=ma, volume=volume, ends=ends), before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu():
    df = load_sample("ETH/BTC")
    prices = torch.tensor(df[["open", "high", "low", "close", "volume"]].to_numpy())
    ends = torch.arange(19, len(df))
    cpu = ohlc_images(prices, ends, 20, height=64, ma=20)
    gpu = ohlc_images(prices.cuda(), ends.cuda(), 20, height=64, ma=20)
    assert (gpu.cpu() != cpu).float().mean() < 1e-4  # float rounding may move a rare pixel


def test_botter_render_writes_preview(tmp_path):
    from botter.cli.render import render as _render

    out = tmp_path / "preview.png"
    _render(compose("render", [f"out={out}", "windows=2", "symbol=XMR/BTC"]))
    with Image.open(out) as png:
        assert png.size[0] > 500 and png.size[1] > 300
