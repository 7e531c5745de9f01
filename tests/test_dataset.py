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
from botter.inference import probabilities
from botter.model import build_model
from botter.render import lookback, render

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


def _ms(times) -> np.ndarray:
    return pd.DatetimeIndex(times).as_unit("ms").asi8


def test_labels_two_and_three_classes():
    r = np.array([-0.02, -0.001, 0.0, 0.0005, 0.003])
    assert dataset.labels_from_returns(r, classes=2).tolist() == [0, 0, 0, 1, 1]
    assert dataset.labels_from_returns(r, classes=3, flat_threshold=0.001).tolist() == [0, 1, 1, 1, 2]
    with pytest.raises(BotterError, match="classes"):
        dataset.labels_from_returns(r, classes=4)


def test_a_window_needs_only_its_past_and_its_label_the_candles_after():
    times = pd.date_range("2024-01-01", periods=14, freq="5min", tz="UTC").delete(6)
    # Positions 0..5 hold candles 0..5, positions 6..12 candles 7..13. Lookback 3, horizon 2: a
    # window ending at e needs e-2 .. e consecutive; its label needs e .. e+3 consecutive too.
    ends, known = dataset.decidable(_ms(times), lookback=3, horizon=2, timeframe="5m")
    assert ends.tolist() == [2, 3, 4, 5, 8, 9, 10, 11, 12]
    assert ends[known].tolist() == [2, 8, 9]  # 3, 4, 5 see the gap coming only in their label; 10.. see the end


def test_build_labels_are_next_open_to_open_returns():
    opens = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19.0]
    render_cfg, _ = _configs(["data.window=3", "render.ma=null"])
    w = dataset.build({"X/Y": _frame(opens)}, window=3, horizon=2, classes=2, timeframe="5m", render=render_cfg,
                      progress=False)
    # Windows end at candles 2..9; the one ending at 2 buys the open of 3 (13), sells the open of 5
    # (15); from candle 7 on the label's exit is not in the data: decided on, not labelled.
    assert w.ends.tolist() == list(range(2, 10))
    np.testing.assert_allclose(w.returns()[:5], [15 / 13 - 1, 16 / 14 - 1, 17 / 15 - 1, 18 / 16 - 1, 19 / 17 - 1])
    assert np.isnan(w.returns()[5:]).all() and w.labels.tolist() == [1] * 5 + [-1] * 3
    assert w.past_returns()[0] == pytest.approx(13 / 10 - 1)  # close of candle 2 (= open 3) / open of candle 0
    assert (w.times == _frame(opens).index.tz_localize(None).to_numpy("datetime64[ns]")[2:]).all()
    assert w.images().shape == (8, 1, 64, 9) and w.images().dtype == torch.uint8
    assert set(w.symbols) == {"X/Y"} and len(w.labelled()) == 5


def test_sample_gaps_cost_the_windows_that_read_them_and_nothing_else():
    render_cfg, _ = _configs()
    df = load_sample("XMR/BTC")
    gaps = np.flatnonzero(np.diff(df.index.as_unit("ns").asi8) != 300 * 10**9)
    assert len(gaps) == 2  # the shipped sample's two real gaps, between candles g and g+1
    window, horizon = 20, 5
    lb = lookback(window, render_cfg["ma"])
    ends, known = dataset.decidable(_ms(df.index), lookback=lb, horizon=horizon, timeframe="5m")
    for g in gaps:
        assert not np.isin(np.arange(g + 1, g + lb), ends).any()  # these charts would read both g and g+1
        assert np.isin(np.arange(g - horizon, g + 1), ends).all()  # decided: their past is complete
        assert not np.isin(np.arange(g - horizon, g + 1), ends[known]).any()  # their label reads the gap
    assert len(ends) == len(df) - lb + 1 - 2 * (lb - 1)
    assert (~known).sum() == 2 * (horizon + 1) + horizon + 1  # before each gap and at the end


def _perturbed(df, cut, rng, drop):
    """df with every candle after index `cut` moved (OHLC stays consistent) and `drop` of them deleted."""
    later = df.copy()
    n = len(df) - cut - 1
    later.iloc[cut + 1 :, :4] *= np.exp(rng.normal(0, 0.05, (n, 1)))
    later.iloc[cut + 1 :, 4] *= rng.uniform(0.1, 10, n)
    return later.drop(later.index[cut + 1 + np.unique(drop % n)]) if len(drop) else later


@settings(max_examples=15, deadline=None)
@given(cut=st.integers(60, 280), drop=st.lists(st.integers(0, 10_000), max_size=8), seed=st.integers(0, 99),
       hours=st.sampled_from([None, [[0, 7200]]]))
def test_no_decision_at_or_before_t_depends_on_anything_after_t(cut, drop, seed, hours):
    # Every candle after t changed, some deleted (a gap that appears later), or the data simply
    # ending at t: the windows up to t, their charts and the model's probabilities stay the same.
    render_cfg, model_cfg = _configs()
    df = load_sample("LTC/BTC").iloc[:300]
    kw = {"window": 20, "horizon": 5, "classes": 2, "timeframe": "5m", "render": render_cfg, "hours": hours,
          "progress": False}
    before = dataset.build({"s": df}, **kw)
    torch.manual_seed(0)
    model = build_model(**model_cfg, input_hw=(render_cfg["height"], render_cfg["width"])).eval()
    t = df.index[cut].tz_localize(None).to_datetime64()
    known = before.times <= t
    rng = np.random.default_rng(seed)
    for later in (_perturbed(df, cut, rng, np.array(drop, dtype=int)), df.iloc[: cut + 1]):
        after = dataset.build({"s": later}, **kw)
        same = after.times <= t
        assert np.array_equal(before.times[known], after.times[same])
        assert torch.equal(before.images(np.flatnonzero(known)), after.images(np.flatnonzero(same)))
        assert np.array_equal(probabilities([model], before.take(known)), probabilities([model], after.take(same)))


def _split_windows(n, missing, horizon):
    times = pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC", name="time")
    times = times.delete(sorted(m for m in set(missing) if m < n))
    opens = np.linspace(1, 2, len(times))
    render_cfg, _ = _configs(["data.window=3", "render.ma=null"])
    return dataset.build({"a": _frame(opens, times), "b": _frame(opens[::-1], times)}, window=3, horizon=horizon,
                         classes=2, timeframe="5m", render=render_cfg, progress=False, allow_empty=True)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(60, 400),
    horizon=st.integers(1, 12),
    extra=st.integers(0, 5),
    missing=st.lists(st.integers(0, 399), max_size=10),
    train=st.floats(0.3, 0.7),
    val=st.floats(0.1, 0.25),
)
def test_split_is_chronological_and_no_label_straddles_two_splits(n, horizon, extra, missing, train, val):
    w = _split_windows(n, missing, horizon)
    if len(np.unique(w.times)) < 3:
        return
    purge = horizon + extra
    exits = w.exits(purge)
    a = dataset.split(w.times, exits, train=train, val=val)
    times = w.times
    starts = {i: times[a == i].min() for i in range(3) if (a == i).any()}
    assert 2 in starts and (a[times >= starts[2]] == 2).all()  # test: everything from its start on
    for early in (0, 1):
        if early not in starts or early + 1 not in starts:
            continue
        # Every label of the earlier split (even read `purge` candles far) is settled by the next one's start.
        assert (exits[a == early] <= starts[early + 1]).all()
        assert (times[a == early] < starts[early + 1]).all()
    for t in np.unique(times):
        assert len(set(a[(times == t) & (a >= 0)])) <= 1  # every symbol of one time is in the same split


def test_split_by_dates_and_bad_settings():
    w = _split_windows(100, [], 3)
    times, exits = w.times, w.exits(3)
    a = dataset.split(times, exits, val_start="2024-01-01 04:00", test_start="2024-01-01 06:00")
    assert times[a == 1].min() == np.datetime64("2024-01-01T04:00")
    assert times[a == 0].max() == np.datetime64("2024-01-01T03:40")  # 04:00 - 4 candles (horizon 3 + 1)
    assert times[a == 2].min() == np.datetime64("2024-01-01T06:00")
    with pytest.raises(BotterError, match="purge"):
        w.exits(2)
    with pytest.raises(BotterError, match="both"):
        dataset.split(times, exits, val_start="2024-01-01 04:00")
    a = dataset.split(times, exits, val_start="2023-01-01", test_start="2023-02-01")
    with pytest.raises(BotterError, match="the train split is empty"):
        dataset.check_splits(w, a)


def test_streamed_charts_equal_the_rendered_ones_bit_for_bit():
    render_cfg, _ = _configs()
    candles = {s: load_sample(s).iloc[:1500] for s in ("XMR/BTC", "DASH/BTC")}  # both with gaps
    w = dataset.build(candles, window=20, horizon=5, classes=2, timeframe="5m", render=render_cfg, progress=False)
    order = np.random.default_rng(0).permutation(len(w))[:700]
    streamed = w.images(order).numpy()
    for i, symbol in enumerate(candles):
        mine = w.symbol_index[order] == i
        ends = w.ends[order][mine] - w.table.offsets[i]
        assert np.array_equal(streamed[mine], render(candles[symbol], 20, ends=ends, **render_cfg))


def test_mplfinance_images_are_cached_and_follow_the_candles(tmp_path, monkeypatch):
    render_cfg, _ = _configs(["render=mplfinance", "render.height=48", "render.width=64"])
    candles = {"ETH/BTC": load_sample("ETH/BTC").iloc[:42]}
    kw = {"window": 20, "horizon": 5, "classes": 2, "timeframe": "5m", "render": render_cfg, "cache_dir": tmp_path,
          "progress": False}
    first = dataset.build(candles, **kw)
    assert len(list((tmp_path / "windows").glob("*.npy"))) == 1

    def no_render(*a, **k):
        raise AssertionError("rendered although the images are cached")

    monkeypatch.setattr(dataset, "render_windows", no_render)
    second = dataset.build(candles, **kw)
    assert torch.equal(first.images(), second.images()) and np.array_equal(first.labels, second.labels)
    changed = candles["ETH/BTC"].copy()
    changed.iloc[30, 1] *= 1.001  # one high: a different key, so it must render
    with pytest.raises(AssertionError, match="rendered"):
        dataset.build({"ETH/BTC": changed}, **kw)


def test_no_window_says_why():
    render_cfg, _ = _configs()
    df = load_sample("ETH/BTC").iloc[:1200]
    holey = df.drop(df.index[29::30])  # every 30th candle missing: runs of 29, a chart reads 39
    kw = {"window": 20, "horizon": 5, "classes": 2, "timeframe": "5m", "render": render_cfg, "progress": False}
    with pytest.raises(BotterError, match="no run of 39 consecutive candles.* 39 gaps.*longest run is 29 candles"):
        dataset.build({"ETH/BTC": holey}, **kw)
    with pytest.raises(BotterError, match="10 candles are fewer than the 39"):
        dataset.build({"ETH/BTC": df.iloc[:10]}, **kw)


def test_class_balance_counts_each_split():
    render_cfg, _ = _configs(["data.window=3", "render.ma=null"])
    w = dataset.build({"X/Y": _frame([10, 11, 10, 11, 12, 11, 10, 9, 10, 11.0])}, window=3, horizon=2, classes=2,
                      timeframe="5m", render=render_cfg, progress=False)
    # ends 2..9; labels of 2..6 from the opens 1 and 3 candles later: 11->11 (r = 0: down), 12->10,
    # 11->9, 10->10 (down), 9->11 (up)
    assert w.labels.tolist() == [0, 0, 0, 0, 1, -1, -1, -1]
    table = dataset.class_balance(w, np.array([0, 0, 1, 1, -1, 2, 2, 2]), 2)
    assert table.loc["train", ["down", "up", "n"]].tolist() == [2, 0, 2]
    assert table.loc["val", "down"] == 2 and table.loc["test", "n"] == 0 and table.loc["test", "unlabelled"] == 3
    assert table.loc["val", "up %"] == 0


def test_a_candle_no_chart_can_be_drawn_from_is_a_gap(caplog):
    render_cfg, _ = _configs()
    df = load_sample("ETH/BTC").iloc[:400].copy()
    bad = [100, 250]  # open above high, close below low: the store keeps them (outside_range: flag)
    df.iloc[bad[0], df.columns.get_loc("open")] = df["high"].iloc[bad[0]] * 1.01
    df.iloc[bad[1], df.columns.get_loc("close")] = df["low"].iloc[bad[1]] * 0.99
    kw = {"window": 20, "horizon": 5, "classes": 2, "timeframe": "5m", "render": render_cfg, "progress": False}
    with caplog.at_level("WARNING", logger="botter.dataset"):
        w = dataset.build({"ETH/BTC": df}, **kw)
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("ETH/BTC: 2 candles no chart can be drawn from (first at ")
    assert str(df.index[bad[0]]) in caplog.records[0].getMessage()
    # exactly the windows and labels of the same candles with those two missing
    missing = dataset.build({"ETH/BTC": df.drop(df.index[bad])}, **kw)
    assert (w.times == missing.times).all() and (w.labels == missing.labels).all()
    assert len(w) < len(dataset.build({"ETH/BTC": load_sample("ETH/BTC").iloc[:400]}, **kw))
    assert torch.equal(w.images(), missing.images())
