"""Market hours: closures (weekends, holidays) are not gaps; real holes in trading hours are."""

import numpy as np
import pandas as pd
import pytest

from botter import dataset
from botter.data import hours, load_sample
from botter.errors import BotterError


def _ms(index) -> np.ndarray:
    return pd.DatetimeIndex(index).as_unit("ms").asi8


def _weekdays(start="2024-01-01", days=140, holidays=("2024-01-15", "2024-02-19", "2024-03-29")):
    """Daily open times of a market trading Monday to Friday, with a few holidays."""
    index = pd.date_range(start, periods=days, freq="D", tz="UTC")
    index = index[index.day_of_week < 5]
    return index.drop(pd.DatetimeIndex(holidays, tz="UTC"))


def _fx(start="2024-01-07 22:00", hours_=24 * 7 * 6):
    """Hourly open times of a market open from Sunday 22:00 to Friday 22:00 UTC."""
    index = pd.date_range(start, periods=hours_, freq="h", tz="UTC")
    minute = index.day_of_week * 1440 + index.hour * 60
    return index[(minute < 4 * 1440 + 22 * 60) | (minute >= 6 * 1440 + 22 * 60)]


def test_crypto_never_closes():
    assert hours.learn(load_sample("XMR/BTC").index, "5m") is None  # its two gaps do not make a closure


def test_daily_stock_hours_are_monday_to_friday():
    assert hours.learn(_weekdays(), "1d") == [[0, 7200]]
    assert hours.describe([[0, 7200]]).startswith("open Mon 00:00 - Sat 00:00 UTC")


def test_fx_hours_and_a_stray_candle():
    index = _fx()
    stray = pd.DatetimeIndex(["2024-01-13 12:00"], tz="UTC")  # one Saturday candle does not open Saturdays
    assert hours.learn(index.append(stray).sort_values(), "1h") == [[0, 4 * 1440 + 22 * 60], [6 * 1440 + 22 * 60, 10080]]


def test_weekends_and_holidays_are_closures_a_missing_trading_day_hour_is_a_gap():
    daily = _weekdays()
    pos = hours.positions(_ms(daily), "1d", [[0, 7200]])
    assert (np.diff(pos) == 1).all()  # every trading day follows the one before, holidays and weekends skipped
    fx = _fx()
    h = hours.learn(fx, "1h")
    assert (np.diff(hours.positions(_ms(fx), "1h", h)) == 1).all()
    christmas = fx[fx.normalize() != pd.Timestamp("2024-01-10", tz="UTC")]  # a whole trading day closed
    assert (np.diff(hours.positions(_ms(christmas), "1h", h)) == 1).all()
    holed = fx.drop(pd.Timestamp("2024-01-10 10:00", tz="UTC"))  # one hour missing on a trading day
    steps = np.diff(hours.positions(_ms(holed), "1h", h))
    assert sorted(set(steps)) == [1, 2] and (steps == 2).sum() == 1
    assert (np.diff(hours.positions(_ms(fx), "1h", None)) > 1).sum() == 5  # without hours: every weekend a gap


def test_daily_stock_candles_give_windows_with_the_default_window():
    index = _weekdays(days=400)
    opens = np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, len(index))))
    close = np.r_[opens[1:], opens[-1]]
    df = pd.DataFrame({"open": opens, "high": np.maximum(opens, close) * 1.01, "low": np.minimum(opens, close) * 0.99,
                       "close": close, "volume": np.ones(len(index))}, index=index.rename("time"))
    render = {"name": "ohlc", "height": 64, "width": 60, "channels": 1, "ma": 20, "volume": True}
    kw = {"window": 20, "horizon": 5, "classes": 2, "timeframe": "1d", "render": render, "progress": False}
    w = dataset.build({"SPY/USD": df}, hours=hours.learn(df.index, "1d"), **kw)
    assert len(w) == len(df) - 39 + 1 and (w.labels >= 0).sum() == len(w) - 5 - 1
    with pytest.raises(BotterError, match="no run of 39 consecutive candles"):
        dataset.build({"SPY/USD": df}, hours=None, **kw)  # as if it never closed: every weekend a gap


def test_bad_hours_say_how_to_write_them():
    assert hours.check("always") is None
    with pytest.raises(BotterError, match="auto, always or a list"):
        hours.check("weekdays")
    with pytest.raises(BotterError, match="0 <= start < end <= 10080"):
        hours.check([[7200, 100]])


@pytest.mark.slow
def test_a_daily_stock_csv_imports_trains_with_the_default_window_and_backtests(tmp_path):
    from botter.cli.backtest import backtest
    from botter.cli.fetch import fetch
    from botter.cli.train import train
    from botter.config import compose
    from botter.runs import open_run

    index = _weekdays(days=760)  # two years of trading days: weekends and three holidays missing
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(index))))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.002, len(index)))
    csv = tmp_path / "SPY_USD-1d.csv"
    pd.DataFrame({"Date": index.strftime("%Y-%m-%d"), "Open": open_, "High": np.maximum(open_, close) * 1.005,
                  "Low": np.minimum(open_, close) * 0.995, "Close": close, "Volume": rng.integers(1e6, 1e7, len(index))}
                 ).to_csv(csv, index=False)
    data = [f"paths.data_dir={tmp_path / 'data'}"]
    fetch(compose("fetch", ["source=csv", f"path={csv}", "exchange.id=local-stocks", *data]))
    run = tmp_path / "run"
    result = train(compose("train", ["data=store", "data.exchange=local-stocks", "data.symbols=[SPY/USD]",
                                     "data.timeframe=1d", "trainer.progress=false", "trainer.device=cpu", *data]),
                   out_dir=run)
    opened = open_run(run)
    assert opened.meta["hours"] == [[0, 7200]]  # learnt: Monday to Friday
    assert result["test_windows"]["labelled"] > 50  # the default window of 20 trading days, across weekends
    p = opened.predictions()  # thresholds the model reaches now and then, so that it trades
    limits = [f"backtest.threshold_up={p['p_up'].quantile(0.7)}", f"backtest.threshold_down={p['p_down'].quantile(0.7)}"]
    stats = backtest(compose("backtest", [f"run_dir={run}", "name=daily", *limits, *data]))["SPY/USD"].stats
    assert stats["# Trades"] > 0
    assert stats["Duration"] > pd.Timedelta(days=100)


def test_auto_hours_are_learnt_from_the_training_part_alone():
    from omegaconf import OmegaConf

    from botter.cli import build_windows, training_end
    from botter.config import compose

    # Hourly candles over 10 weeks from a Monday: weekends traded in weeks 0-3 only. The first 70 %
    # of the time span (the training part) trades most weekends; the whole span, most weekends not.
    index = pd.date_range("2024-01-01", periods=10 * 168, freq="1h", tz="UTC", name="time")
    week, weekend = (index - index[0]).days // 7, index.day_of_week >= 5
    index = index[~weekend | (week < 4)]
    close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.001, len(index))))
    df = pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                       "volume": 1.0}, index=index)
    c = OmegaConf.to_container(compose("train", ["data.timeframe=1h", "data.symbols=[SPY/USD]"]), resolve=True)
    assert hours.resolve("auto", {"SPY/USD": df}, "1h") == [[0, 7200]]  # what the test period would teach
    assert training_end(c, {"SPY/USD": df}) == index[0] + 0.7 * (index[-1] - index[0])
    _, learnt, _ = build_windows(c, progress=False, candles={"SPY/USD": df})
    assert learnt is None
    # dates given: up to val_start
    c["dataset"]["split"] |= {"val_start": "2024-01-29", "test_start": "2024-02-26"}
    assert training_end(c, {"SPY/USD": df}) == pd.Timestamp("2024-01-29", tz="UTC")
    assert build_windows(c, progress=False, candles={"SPY/USD": df})[1] is None
