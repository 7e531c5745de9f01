"""CSV import and the shipped samples."""

import pandas as pd
import pytest

from botter.data import load, load_candles, load_sample, sample_symbols
from botter.data.csvfile import infer_timeframe, read_csv_candles, symbol_from_name
from botter.errors import BotterError


def test_samples_are_candles_frames(eth):
    assert sample_symbols() == ["DASH/BTC", "ETH/BTC", "LTC/BTC", "XMR/BTC"]
    assert eth.shape == (5760, 5)
    assert list(eth.columns) == ["open", "high", "low", "close", "volume"]
    assert (eth.dtypes == "float64").all()
    assert eth.index.name == "time" and str(eth.index.tz) == "UTC"
    assert eth.index.is_monotonic_increasing and eth.index.is_unique
    # The first row of the shipped file, exactly.
    assert eth.index[0] == pd.Timestamp("2018-01-10 04:55", tz="UTC")
    assert eth.iloc[0].tolist() == [0.0984, 0.0994766, 0.09828605, 0.0994766, 1820.544474]
    assert len(load_sample("XMR/BTC")) == len(load_sample("DASH/BTC")) == 5758


def test_load_dispatches_and_bounds_the_range(eth, tmp_path):
    got = load("sample", ["LTC/BTC", "ETH/BTC"], "5m", start="2018-01-11", end="2018-01-12")
    assert list(got) == ["LTC/BTC", "ETH/BTC"]
    pd.testing.assert_frame_equal(got["ETH/BTC"], eth.loc["2018-01-11":"2018-01-11 23:55"])
    with pytest.raises(BotterError, match="no shipped sample for BTC/USDT 5m"):
        load("sample", ["BTC/USDT"], "5m")
    with pytest.raises(BotterError, match="botter-fetch exchange.id=binance symbol=ETH/BTC timeframe=5m"):
        load("store", ["ETH/BTC"], "5m", data_dir=tmp_path)
    with pytest.raises(BotterError, match="not one of: sample, store, planted"):
        load("nope", ["ETH/BTC"], "5m")


def write(path, eth, *, time, names, newest_first=False):
    df = eth.iloc[:50].copy()
    df.columns = names
    df.insert(0, "t", time(df.index))
    if newest_first:
        df = df.iloc[::-1]
    df.to_csv(path, index=False, header=["Date", *names])


@pytest.mark.parametrize(
    "time",
    [
        lambda ix: ix.strftime("%Y-%m-%d %H:%M:%S"),  # text
        lambda ix: ix.as_unit("s").asi8,  # epoch seconds
        lambda ix: ix.as_unit("ms").asi8,  # epoch ms
    ],
)
def test_header_with_a_date_column_and_capitalised_names(tmp_path, eth, time):
    path = tmp_path / "ETH_BTC.csv"
    write(path, eth, time=time, names=["Open", "High", "Low", "Close", "Volume"], newest_first=True)
    df, timeframe = read_csv_candles(path)
    assert timeframe == "5m"
    # File order is kept (newest first): validation reports it, the store sorts it.
    pd.testing.assert_frame_equal(df.sort_index(), eth.iloc[:50])


def test_headerless_ccxt_rows(tmp_path, eth):
    path = tmp_path / "rows.csv"
    rows = eth.iloc[:30].reset_index().assign(time=lambda d: d.time.dt.as_unit("ms").astype("int64"))
    rows.to_csv(path, index=False, header=False)
    assert path.read_text().startswith("1515560100000,0.0984,")
    df, _ = read_csv_candles(path, "5m")
    pd.testing.assert_frame_equal(df, eth.iloc[:30])


def test_csv_errors_say_what_to_do(tmp_path):
    (tmp_path / "x.csv").write_text("when,open,high,low,close,volume\n1,1,1,1,1,1\n")
    with pytest.raises(BotterError, match="no date/time column"):
        read_csv_candles(tmp_path / "x.csv")
    (tmp_path / "y.csv").write_text("date,open,high,low,close\n2024-01-01,1,1,1,1\n")
    with pytest.raises(BotterError, match="no 'volume' column"):
        read_csv_candles(tmp_path / "y.csv")
    with pytest.raises(BotterError, match="no CSV file"):
        read_csv_candles(tmp_path / "missing.csv")
    with pytest.raises(BotterError, match="give symbol="):
        symbol_from_name("candles.csv")


def test_timeframe_and_symbol_inference():
    hour = 3_600_000
    assert infer_timeframe([0, hour, 2 * hour, 5 * hour]) == "1h"  # the common step, despite a gap
    with pytest.raises(BotterError, match="give timeframe="):
        infer_timeframe([0, 7_000])
    assert symbol_from_name("binance_XMR-BTC_5m.csv") == "XMR/BTC"
    assert symbol_from_name("BTC_USDT-1h.csv") == "BTC/USDT"


def test_store_round_trip(tmp_path, eth):
    from botter.data.store import append_store, store_path

    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    assert path == tmp_path / "binance" / "ETH_BTC-5m.parquet"
    append_store(path, eth.iloc[:100])
    append_store(path, eth.iloc[50:200])  # overlap: stored candles win, nothing doubled
    got = load_candles("binance", "ETH/BTC", "5m", start="2018-01-10 05:00", end=1515560100000 + 150 * 300_000,
                       data_dir=tmp_path)
    pd.testing.assert_frame_equal(got, eth.iloc[1:150])
