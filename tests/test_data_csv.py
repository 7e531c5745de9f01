"""CSV import and the shipped samples."""

import pandas as pd
import pytest

from botter.data import load, load_sample, sample_symbols
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
    pd.testing.assert_frame_equal(df, eth.iloc[:50])  # newest first, read oldest first


def test_rows_out_of_order_are_read_in_file_order(tmp_path, eth):
    mixed = eth.iloc[[0, 1, 3, 2, 4, 5]]
    path = tmp_path / "ETH_BTC.csv"
    written(path, mixed)
    df, _ = read_csv_candles(path)
    pd.testing.assert_frame_equal(df, mixed)  # validation reports the disorder, the store sorts it


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


HEADER = b"date,open,high,low,close,volume\n"
ROW = b"2024-01-01 00:00,1,2,0.5,1.5,10\n"
# Files that cannot be read, each with what the one-line message says (tests/test_data_cli.py runs them
# through botter-fetch too).
BAD_FILES = {
    "empty": (b"", "is empty"),
    "blank": (b"\n \n\n", "is empty"),
    "header only": (HEADER, "has a header but no candle rows"),
    "latin-1": (HEADER + ROW + "2024-01-01 00:05,1,2,0.5,1.5,M\xfcller\n".encode("latin-1"),
                r"is not UTF-8 text \(byte 0xfc on line 3\): save it as UTF-8"),
    "binary": (bytes(range(256)), "is not UTF-8 text"),
    "text for a number": (HEADER + ROW + b"2024-01-01 00:05,1,2,0.5,abc,10\n",
                          "line 3: 'abc' in the close column is not a number"),
    "no time": (HEADER + b",1,2,0.5,1.5,10\n", "line 2 has no time"),
    "bad time": (HEADER + b"yesterday,1,2,0.5,1.5,10\n", "cannot read the times"),
    "ragged row": (HEADER + ROW + b"2024-01-01,1,2,0.5,1.5,10,7,8\n", "line 3: 8 fields where the first row has 6"),
    "ragged first row": (HEADER + b"2024-01-01,1,2,0.5,1.5,10,7\n", "line 2: more fields than the header names"),
    "pipes": (b"date|open|high|low|close|volume\n2024-01-01|1|2|0.5|1.5|10\n",
              "no header naming open, high, low and close, and no ccxt rows"),
    "five columns, no header": (b"1704067200000,1,2,0.5,1.5\n", "no ccxt rows"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_file_that_cannot_be_read_is_one_clear_line(tmp_path, name):
    content, message = BAD_FILES[name]
    path = tmp_path / "ETH_BTC.csv"
    path.write_bytes(content)
    with pytest.raises(BotterError, match=message) as e:
        read_csv_candles(path, "5m")
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def written(path, frame, **to_csv):
    """`frame` (a Candles frame) written as a CSV with a Date column, as spreadsheets write them."""
    table = frame.rename(columns=str.capitalize).reset_index()
    table.insert(0, "Date", table.pop("time").dt.strftime("%Y-%m-%d %H:%M"))
    table.to_csv(path, index=False, **to_csv)
    return path.read_text()


@pytest.mark.parametrize("to_csv, starts", [
    ({"sep": ";", "decimal": ","}, "Date;Open;High;Low;Close;Volume\n2018-01-10 04:55;0,0984;0,0994766;"),
    ({"sep": "\t"}, "Date\tOpen\tHigh\tLow\tClose\tVolume\n2018-01-10 04:55\t0.0984\t"),
    ({"decimal": ","}, 'Date,Open,High,Low,Close,Volume\n2018-01-10 04:55,"0,0984","0,0994766",'),
])
def test_separators_and_decimal_commas_are_found(tmp_path, eth, to_csv, starts):
    path = tmp_path / "ETH_BTC.csv"
    assert written(path, eth.iloc[:40], **to_csv).startswith(starts)
    df, timeframe = read_csv_candles(path)
    assert timeframe == "5m"
    pd.testing.assert_frame_equal(df, eth.iloc[:40])


def test_thousands_separators_are_not_decimal_marks(tmp_path):
    (tmp_path / "BTC_USDT.csv").write_text(
        'time,open,high,low,close,volume\n2024-01-01 00:00,"42,000.5","42,100",41900,"42,050.25",1.5\n'
        '2024-01-01 01:00,"42,050.25","42,300","42,000","42,200",2\n'
    )
    df, timeframe = read_csv_candles(tmp_path / "BTC_USDT.csv")
    assert timeframe == "1h"
    assert df.iloc[0].tolist() == [42000.5, 42100.0, 41900.0, 42050.25, 1.5]
    (tmp_path / "eu.csv").write_text("time;open;high;low;close;volume\n2024-01-01 00:00;42.000,5;42.100;41.900;1,5;2\n")
    assert read_csv_candles(tmp_path / "eu.csv", "1h")[0].iloc[0].tolist() == [42000.5, 42100.0, 41900.0, 1.5, 2.0]


def test_cryptodatadownload_file_with_its_url_on_line_one(tmp_path, eth):
    # Newest first, epoch ms in "unix", base volume first ("Volume ETH"), as CryptoDataDownload writes them.
    part = eth.iloc[:30].iloc[::-1]
    table = pd.DataFrame({
        "unix": part.index.as_unit("ms").asi8, "date": part.index.strftime("%Y-%m-%d %H:%M:%S"), "symbol": "ETH/BTC",
        **{c: part[c].to_numpy() for c in ("open", "high", "low", "close")},
        "Volume ETH": part.volume.to_numpy(), "Volume BTC": (part.volume * part.close).to_numpy(), "tradecount": 7,
    })
    path = tmp_path / "Binance_ETHBTC_5m.csv"
    path.write_text("https://www.CryptoDataDownload.com\n" + table.to_csv(index=False))
    df, timeframe = read_csv_candles(path)
    assert timeframe == "5m"
    pd.testing.assert_frame_equal(df, eth.iloc[:30])
    with pytest.raises(BotterError, match="give symbol="):  # BTCUSDT-style names do not say where BTC ends
        symbol_from_name(path)


def test_timeframe_and_symbol_inference():
    hour = 3_600_000
    assert infer_timeframe([0, hour, 2 * hour, 5 * hour]) == "1h"  # the common step, despite a gap
    with pytest.raises(BotterError, match="give timeframe="):
        infer_timeframe([0, 7_000])
    assert symbol_from_name("binance_XMR-BTC_5m.csv") == "XMR/BTC"
    assert symbol_from_name("BTC_USDT-1h.csv") == "BTC/USDT"
