import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from botter import dataset
from botter.config import compose
from botter.data import load_sample
from botter.errors import BotterError
from botter.model import build_model
from botter.train import predict

FIVE_MIN = np.timedelta64(300, "s")


def _configs(overrides=()):
    cfg = OmegaConf.to_container(compose("train", list(overrides)), resolve=True)
    return cfg["render"], cfg["model"]


def _frame(opens, times=None):
    """Candles with the given opens (close = next open), 5-minute times from 2024-01-01 unless given."""
    opens = np.asarray(opens, dtype=float)
    close = np.r_[opens[1:], opens[-1]]
    if times is None:
        times = pd.date_range("2024-01-01", periods=len(opens), freq="5min", tz="UTC", name="time")
    return pd.DataFrame(
        {"open": opens, "high": np.maximum(opens, close) * 1.01, "low": np.minimum(opens, close) * 0.99,
         "close": close, "volume": np.ones(len(opens))},
        index=times,
    )


def test_labels_two_and_three_classes():
    r = np.array([-0.02, -0.001, 0.0, 0.0005, 0.003])
    assert dataset.labels_from_returns(r, classes=2).tolist() == [0, 0, 0, 1, 1]
    assert dataset.labels_from_returns(r, classes=3, flat_threshold=0.001).tolist() == [0, 1, 1, 1, 2]
    with pytest.raises(BotterError, match="classes"):
        dataset.labels_from_returns(r, classes=4)


def test_window_ends_drop_every_span_that_crosses_a_gap():
    times = pd.date_range("2024-01-01", periods=14, freq="5min", tz="UTC").delete(6)
    # Positions 0..5 hold candles 0..5, positions 6..12 candles 7..13. Window 3, horizon 2: the
    # window ending at position e needs positions e-2 .. e+3 to be consecutive candles.
    assert dataset.window_ends(times, lookback=3, horizon=2, timeframe="5m").tolist() == [2, 8, 9]


def test_build_labels_are_next_open_to_open_returns():
    opens = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19.0]
    render, _ = _configs(["data.window=3", "render.ma=null"])
    w = dataset.build({"X/Y": _frame(opens)}, window=3, horizon=2, classes=2, timeframe="5m", render=render,
                      progress=False)
    # Windows end at candles 2..6; the window ending at 2 buys the open of 3 (13), sells the open of 5 (15).
    assert w.returns == pytest.approx([15 / 13 - 1, 16 / 14 - 1, 17 / 15 - 1, 18 / 16 - 1, 19 / 17 - 1])
    assert w.past_returns[0] == pytest.approx(13 / 10 - 1)  # close of candle 2 (= open 3) / open of candle 0
    assert (w.times == _frame(opens).index.tz_localize(None).to_numpy("datetime64[ns]")[2:7]).all()
    assert w.images.shape == (5, 1, 64, 9) and w.images.dtype == np.uint8
    assert w.labels.tolist() == [1] * 5 and set(w.symbols) == {"X/Y"}


def test_sample_gaps_drop_the_windows_around_them():
    render, _ = _configs()
    df = load_sample("XMR/BTC")
    gaps = np.flatnonzero(np.diff(df.index.as_unit("ns").asi8) != 300 * 10**9)
    assert len(gaps) == 2  # the shipped sample's two real gaps, between candles g and g+1
    window, horizon, ma = 20, 5, render["ma"]
    lookback = window + ma - 1
    ends = dataset.window_ends(df.index, lookback=lookback, horizon=horizon, timeframe="5m")
    for g in gaps:
        crossing = np.arange(g - horizon, g + lookback)  # these ends read both candle g and g+1
        assert not np.isin(crossing, ends).any()
        assert {g - horizon - 1, g + lookback} <= set(ends)  # their neighbours stay
    assert len(ends) == len(df) - lookback - horizon - 2 * (lookback + horizon)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(60, 400),
    horizon=st.integers(1, 12),
    extra=st.integers(0, 5),
    missing=st.lists(st.integers(0, 399), max_size=10),
    train=st.floats(0.3, 0.7),
    val=st.floats(0.1, 0.25),
)
def test_split_is_chronological_with_a_purge_of_at_least_the_horizon(n, horizon, extra, missing, train, val):
    times = np.datetime64("2024-01-01T00:00") + np.arange(n) * FIVE_MIN
    times = np.delete(times, [m for m in set(missing) if m < n])
    times = np.concatenate([times, times])  # two symbols, same times
    purge = horizon + extra
    try:
        a = dataset.split(times, timeframe="5m", horizon=horizon, purge=purge, train=train, val=val)
    except BotterError as e:
        assert "split is empty" in str(e)  # a split came out empty: that is reported, not silently allowed
        return
    first = {i: times[a == i].min() for i in range(3)}
    last = {i: times[a == i].max() for i in range(3)}
    for early in (0, 1):
        # The exit open of the last label of the earlier split is at or before the next split's first decision.
        assert last[early] + (1 + horizon) * FIVE_MIN <= first[early + 1]
        dropped = times[(a == -1) & (times > last[early]) & (times < first[early + 1])]
        assert len(np.unique(dropped)) <= purge
    for t in np.unique(times):
        assert len(set(a[times == t])) == 1  # every symbol of one time is in the same split


def test_split_by_dates_and_bad_settings():
    times = np.datetime64("2024-01-01T00:00") + np.arange(100) * FIVE_MIN
    a = dataset.split(times, timeframe="5m", horizon=3, val_start="2024-01-01 04:00", test_start="2024-01-01 06:00")
    assert times[a == 1].min() == np.datetime64("2024-01-01T04:00")
    assert times[a == 0].max() == np.datetime64("2024-01-01T03:40")  # 04:00 - 4 candles (horizon 3 + 1)
    assert times[a == 2].min() == np.datetime64("2024-01-01T06:00")
    with pytest.raises(BotterError, match="purge"):
        dataset.split(times, timeframe="5m", horizon=3, purge=2)
    with pytest.raises(BotterError, match="both"):
        dataset.split(times, timeframe="5m", horizon=3, val_start="2024-01-01 04:00")
    with pytest.raises(BotterError, match="empty"):
        dataset.split(times, timeframe="5m", horizon=3, val_start="2023-01-01", test_start="2023-02-01")


def test_cache_skips_rendering_and_follows_the_candles(tmp_path, monkeypatch):
    render, _ = _configs()
    candles = {"ETH/BTC": load_sample("ETH/BTC").iloc[:400]}
    kw = {"window": 20, "horizon": 5, "classes": 2, "timeframe": "5m", "render": render, "cache_dir": tmp_path,
          "progress": False}
    first = dataset.build(candles, **kw)
    assert len(list((tmp_path / "windows").glob("*.npy"))) == 1

    def no_render(*a, **k):
        raise AssertionError("rendered although the images are cached")

    monkeypatch.setattr(dataset, "render_windows", no_render)
    second = dataset.build(candles, **kw)
    assert np.array_equal(first.images, second.images) and np.array_equal(first.labels, second.labels)
    changed = candles["ETH/BTC"].copy()
    changed.iloc[100, 1] *= 1.001  # one high: a different key, so it must render
    with pytest.raises(AssertionError, match="rendered"):
        dataset.build({"ETH/BTC": changed}, **kw)
    with pytest.raises(AssertionError, match="rendered"):
        dataset.build(candles, **{**kw, "render": {**render, "height": 32}})


def test_no_look_ahead_in_images_or_predictions():
    render, model_cfg = _configs()
    df = load_sample("LTC/BTC").iloc[:300]
    kw = {"window": 20, "horizon": 5, "classes": 2, "timeframe": "5m", "render": render, "progress": False}
    before = dataset.build({"s": df}, **kw)
    torch.manual_seed(0)
    model = build_model(**model_cfg, input_hw=(render["height"], render["width"])).eval()
    rng = np.random.default_rng(0)
    for cut in (150, 220):  # candle index of the last candle the decisions may read
        later = df.copy()
        scale = np.exp(rng.normal(0, 0.05, (len(df) - cut - 1, 1)))
        later.iloc[cut + 1 :, :4] *= scale  # every later candle moves (OHLC stays consistent)
        later.iloc[cut + 1 :, 4] *= rng.uniform(0.1, 10, len(df) - cut - 1)
        after = dataset.build({"s": later}, **kw)
        known = before.times <= df.index[cut].tz_localize(None).to_datetime64()
        assert known.sum() > 50
        assert np.array_equal(before.images[known], after.images[: known.sum()])
        assert not np.array_equal(before.images[~known], after.images[known.sum() :])
        assert np.array_equal(predict(model, before.images[known]), predict(model, after.images[: known.sum()]))


def test_class_balance_counts_each_split():
    w = dataset.Windows(
        images=np.zeros((6, 1, 2, 2), np.uint8), labels=np.array([0, 1, 1, 0, 0, 1]), returns=np.zeros(6),
        past_returns=np.zeros(6), times=np.zeros(6, "datetime64[ns]"), symbols=np.array(["a"] * 6, object),
    )
    table = dataset.class_balance(w, np.array([0, 0, 0, 1, -1, 2]), 2)
    assert table.loc["train", ["down", "up", "n"]].tolist() == [1, 2, 3]
    assert table.loc["val", "down"] == 1 and table.loc["test", "up"] == 1
    assert table.loc["train", "up %"] == pytest.approx(66.7)
