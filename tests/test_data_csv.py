"""CSV import and the shipped samples."""

import pandas as pd
import pytest

from botter.data import load, load_sample, sample_symbols
from botter.data.candles import from_rows, to_ms
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
    "bad time": (HEADER + ROW + b"yesterday,1,2,0.5,1.5,10\n", "line 3: cannot read the time .yesterday. as month-first"),
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
    df, timeframe = read_csv_candles(path, symbol="ETH/BTC")  # the base currency's volume: Volume ETH
    assert timeframe == "5m"
    pd.testing.assert_frame_equal(df, eth.iloc[:30])
    with pytest.raises(BotterError, match="give symbol="):  # BTCUSDT-style names do not say where BTC ends
        symbol_from_name(path)
    with pytest.raises(BotterError, match="the columns 'Volume ETH' and 'Volume BTC' could each be the volume: give "
                                          "symbol=BASE/QUOTE to take the base currency's"):
        read_csv_candles(path)
    with pytest.raises(BotterError, match="none is in LTC/BTC's base currency: keep the one to use, named 'volume'"):
        read_csv_candles(path, symbol="LTC/BTC")


def test_timeframe_inference():
    hour = 3_600_000
    assert infer_timeframe([0, hour, 2 * hour, 5 * hour]) == "1h"  # the common step, despite a gap
    with pytest.raises(BotterError, match="candles are 7 seconds apart, not a usual timeframe: give timeframe="):
        infer_timeframe([0, 7_000])
    months = pd.date_range("2023-01-01", periods=14, freq="MS", tz="UTC").as_unit("ms").asi8
    assert infer_timeframe(months) == "1M"


@pytest.mark.parametrize("name, symbol", [
    ("binance_XMR-BTC_5m.csv", "XMR/BTC"),
    ("BTC_USDT-1h.csv", "BTC/USDT"),
    ("data_2024-01_BTC-USDT.csv", "BTC/USDT"),  # a date is no market
    ("BINANCE_ETH-BTC_1H.csv", "ETH/BTC"),  # nor an exchange
    ("BTCUSDT-1h-2024-01.csv", None),  # Binance Vision: not 2024/01
    ("BTCUSDT_15M.csv", None),  # not BTCUSDT/15M
    ("ETHBTC_1D.csv", None),
    ("2024-01-02_candles.csv", None),
    ("BTC-USDT_ETH-USDT.csv", None),  # two markets: which?
])
def test_the_symbol_is_taken_only_from_a_clear_base_quote_pair_in_the_file_name(name, symbol):
    if symbol:
        assert symbol_from_name(name) == symbol
    else:
        with pytest.raises(BotterError, match=f"cannot tell the symbol from the file name {name}: .*give "
                                              "symbol=BASE/QUOTE"):
            symbol_from_name(name)


def csv_file(tmp_path, text):
    path = tmp_path / f"{len(list(tmp_path.iterdir()))}.csv"
    path.write_text(text)
    return path


def expected(times, rows):
    """A Candles frame at `times` (text, UTC) with the values `rows`."""
    return from_rows([[to_ms(t), *r] for t, r in zip(times, rows)])


BINANCE_KLINES = ("Open time,Open,High,Low,Close,Volume,Close time,Quote asset volume,Number of trades,"
                  "Taker buy base asset volume,Taker buy quote asset volume,Ignore\n")


@pytest.mark.parametrize("header", [
    BINANCE_KLINES,  # the header Binance's kline docs name
    "Open time,Open,High,Low,Close,Volume\n",
    "Open,Open time,High,Low,Close,Volume\n",  # order does not matter: a time column is never a price
])
def test_a_time_column_is_never_taken_for_a_price(tmp_path, header):
    names = header.strip().split(",")
    rows = []
    for t, o in ((1704067200000, 42000.5), (1704070800000, 42100.0)):
        cells = {"Open time": t, "Open": o, "High": o + 10, "Low": o - 10, "Close": o + 1, "Volume": 3.5,
                 "Close time": t + 3_599_999}
        rows.append(",".join(str(cells.get(n, 7)) for n in names))
    df, timeframe = read_csv_candles(csv_file(tmp_path, header + "\n".join(rows) + "\n"))
    assert timeframe == "1h"
    pd.testing.assert_frame_equal(df, expected(["2024-01-01 00:00", "2024-01-01 01:00"],
                                               [[42000.5, 42010.5, 41990.5, 42001.5, 3.5],
                                                [42100.0, 42110.0, 42090.0, 42101.0, 3.5]]))


def test_exact_column_names_come_first_and_several_candidates_are_refused(tmp_path):
    path = csv_file(tmp_path, "date,open price,open,high,low,close,volume\n2024-01-01,1,2,3,1,2,5\n")
    assert read_csv_candles(path, "1d")[0].iloc[0].tolist() == [2.0, 3.0, 1.0, 2.0, 5.0]
    path = csv_file(tmp_path, "date,open bid,open ask,high,low,close,volume\n2024-01-01,1,2,3,1,2,5\n")
    with pytest.raises(BotterError, match="the columns 'open bid' and 'open ask' could each be the open: rename the "
                                          "one to use to 'open'"):
        read_csv_candles(path, "1d")
    path = csv_file(tmp_path, "Open time,High,Low,Close,Volume\n2024-01-01,3,1,2,5\n")
    with pytest.raises(BotterError, match="no header naming open, high, low and close"):
        read_csv_candles(path, "1d")


def lines(times, fmt="{}"):
    return "".join(f"{fmt.format(t)},1,2,0.5,1.5,10\n" for t in times)


def test_weekly_and_monthly_candles_open_on_the_calendar(tmp_path):
    # Binance 1w candles open on Mondays, 1M candles on the 1st: every one is on the grid.
    mondays = pd.date_range("2024-01-01", periods=6, freq="7D")
    df, timeframe = read_csv_candles(csv_file(tmp_path, HEADER.decode() + lines(mondays.strftime("%Y-%m-%d"))))
    assert timeframe == "1w" and list(df.index) == list(mondays.tz_localize("UTC"))
    firsts = pd.date_range("2023-11-01", periods=6, freq="MS")
    df, timeframe = read_csv_candles(csv_file(tmp_path, HEADER.decode() + lines(firsts.as_unit("ms").asi8)))
    assert timeframe == "1M" and list(df.index) == list(firsts.tz_localize("UTC"))
    # Weeks stamped on Sundays are on no grid of botter's: one line that says so.
    with pytest.raises(BotterError, match=r"no candle opens on the 1w grid \(weeks open on Monday 00:00 UTC\); the "
                                          "first opens at 2023-12-31 00:00 UTC"):
        read_csv_candles(csv_file(tmp_path, HEADER.decode() + lines((mondays - pd.Timedelta("1D")).strftime("%Y-%m-%d"))))


YFINANCE = ["2024-03-07 00:00:00-05:00", "2024-03-08 00:00:00-05:00", "2024-03-11 00:00:00-04:00",
            "2024-03-12 00:00:00-04:00"]  # New York midnights, across the switch to summer time


def test_daily_candles_at_a_local_midnight_are_refused_or_stored_at_their_date(tmp_path):
    path = csv_file(tmp_path, HEADER.decode() + lines(YFINANCE))
    with pytest.raises(BotterError, match=r"no candle opens on the 1d grid \(days open at 00:00 UTC\); the first "
                                          r"opens at 2024-03-07 05:00 UTC: they are stamped at a local midnight \(the "
                                          r"times carry a UTC offset\): give local_dates=true"):
        read_csv_candles(path)
    df, timeframe = read_csv_candles(path, local_dates=True)
    assert timeframe == "1d"
    assert list(df.index.strftime("%Y-%m-%d %H:%M")) == ["2024-03-07 00:00", "2024-03-08 00:00", "2024-03-11 00:00",
                                                         "2024-03-12 00:00"]
    # East of UTC the local midnight is the UTC day before: the date written counts.
    tokyo = csv_file(tmp_path, HEADER.decode() + lines(["2024-03-07T00:00:00+09:00", "2024-03-08T00:00:00+09:00"]))
    assert read_csv_candles(tokyo, "1d", local_dates=True)[0].index[0] == pd.Timestamp("2024-03-07", tz="UTC")
    with pytest.raises(BotterError, match="local_dates=true is for daily or longer candles, and these are 1h"):
        read_csv_candles(csv_file(tmp_path, HEADER.decode() + lines(["2024-01-01 00:00", "2024-01-01 01:00"])),
                         local_dates=True)
    with pytest.raises(BotterError, match="the times are epoch numbers, which name an instant"):
        read_csv_candles(csv_file(tmp_path, HEADER.decode() + lines([1704067200000, 1704153600000])), local_dates=True)


def test_day_first_dates_are_read_with_one_format_for_every_row(tmp_path):
    hours = pd.date_range("2022-03-01", periods=15 * 24, freq="h")  # 1 to 15 March: days past 12 say day-first
    path = csv_file(tmp_path, HEADER.decode() + lines(hours.strftime("%d.%m.%Y %H:%M")))
    df, timeframe = read_csv_candles(path)
    assert timeframe == "1h" and list(df.index) == list(hours.tz_localize("UTC"))
    days = pd.date_range("2024-01-01", "2024-01-31")
    df, timeframe = read_csv_candles(csv_file(tmp_path, HEADER.decode() + lines(days.strftime("%d/%m/%Y"))))
    assert timeframe == "1d" and list(df.index) == list(days.tz_localize("UTC"))
    us = csv_file(tmp_path, HEADER.decode() + lines(days.strftime("%m/%d/%Y")))
    assert list(read_csv_candles(us)[0].index) == list(days.tz_localize("UTC"))
    # Two days of hours: both readings parse, day-first is the evenly spaced one.
    two = csv_file(tmp_path, HEADER.decode() + lines(hours[:48].strftime("%d.%m.%Y %H:%M")))
    assert list(read_csv_candles(two)[0].index) == list(hours[:48].tz_localize("UTC"))
    # 1 to 12 January day-first or the 1sts of 2024 month-first: evenly spaced both ways.
    twelve = csv_file(tmp_path, HEADER.decode() + lines(days[:12].strftime("%d/%m/%Y")))
    with pytest.raises(BotterError, match=r"the dates read both month-first and day-first \('02/01/2024' on line 3 is "
                                          r"2024-02-01 or 2024-01-02\), sorted and evenly spaced either way: give "
                                          r"dayfirst=true \(day-first\) or dayfirst=false \(month-first\)"):
        read_csv_candles(twelve)
    df, timeframe = read_csv_candles(twelve, dayfirst=True)
    assert timeframe == "1d" and list(df.index) == list(days[:12].tz_localize("UTC"))
    df, timeframe = read_csv_candles(twelve, dayfirst=False)
    assert timeframe == "1M" and df.index[1] == pd.Timestamp("2024-02-01", tz="UTC")
    with pytest.raises(BotterError, match=r"line 290: cannot read the time '13.03.2022 00:00' as month-first"):
        read_csv_candles(path, dayfirst=False)


def test_a_bad_time_is_named_with_its_line_counting_blank_lines(tmp_path):
    path = csv_file(tmp_path, "source: somewhere\n\n" + HEADER.decode() + "\n" + lines(["2024-01-01 00:00"]) + "\n\n"
                    + lines(["2024-01-01 01:00", "2024-13-01 02:00"]))
    with pytest.raises(BotterError, match=r"line 9: cannot read the time '2024-13-01 02:00'"):
        read_csv_candles(path)
    path = csv_file(tmp_path, HEADER.decode() + "\n" + lines(["2024-01-01 00:00"]) + "\n2024-01-01 01:00,1,2,0.5,x,10\n")
    with pytest.raises(BotterError, match=r"line 5: 'x' in the close column is not a number"):
        read_csv_candles(path)


def test_a_timeframe_the_spacing_contradicts_is_refused(tmp_path):
    five = pd.date_range("2024-01-01", periods=36, freq="5min")
    path = csv_file(tmp_path, HEADER.decode() + lines(five.strftime("%Y-%m-%d %H:%M")))
    for timeframe in ("1h", "1m", "15m"):
        with pytest.raises(BotterError, match=f"timeframe={timeframe}, but the candles are 5m apart .*: give the "
                                              "timeframe they are, or leave timeframe out"):
            read_csv_candles(path, timeframe)
    assert len(read_csv_candles(path, "5m")[0]) == 36
    # Gaps and a candle off the grid do not contradict it.
    assert len(read_csv_candles(csv_file(tmp_path, HEADER.decode() + lines(
        ["2024-01-01 00:00", "2024-01-01 00:05", "2024-01-01 00:07", "2024-01-01 00:10", "2024-01-01 01:00"])),
        "5m")[0]) == 5


@pytest.mark.parametrize("unit, factor", [("s", 1e-3), ("ms", 1), ("us", 1e3), ("ns", 1e6)])
def test_epoch_times_in_any_unit(tmp_path, eth, unit, factor):
    ms = eth.index[:20].as_unit("ms").asi8
    path = csv_file(tmp_path, HEADER.decode() + lines([int(t * factor) if factor >= 1 else t // 1000 for t in ms]))
    df, timeframe = read_csv_candles(path)
    assert timeframe == "5m" and list(df.index) == list(eth.index[:20])
    assert len(read_csv_candles(path, "5m")[0]) == 20


@pytest.mark.parametrize("time, why", [
    ("99999999999999999999", "is no epoch number in milliseconds"),  # too big for int64
    ("1e19", "is no epoch number in milliseconds"),
    ("1515560", "is no epoch number in milliseconds"),  # seconds among milliseconds
    ("1515560100", "is no epoch number in milliseconds"),
    ("1800-01-01 00:00", "is not from 1900 to 9999"),
])
def test_a_time_out_of_range_is_named_with_its_line(tmp_path, time, why):
    rows = ["1515560100000", "1515560400000", time, "1515560700000"]
    if ":" in time:
        rows = ["2018-01-10 05:00", "2018-01-10 05:05", time, "2018-01-10 05:10"]
    shown = {"1e19": "1e\\+19"}.get(time, time if time.isdigit() and len(time) < 17 else f"'{time}'")
    with pytest.raises(BotterError, match=f"line 4: the time {shown} {why}"):
        read_csv_candles(csv_file(tmp_path, HEADER.decode() + lines(rows)))


def test_missing_values_are_missing_whatever_they_are_written_as(tmp_path):
    markers = ["", "NaN", "nan", "n/a", "N/A", "null", "NULL", "None", "-", "NA", "#N/A"]
    rows = [f"2024-01-01 {h:02d}:00,1,2,0.5,{m},10\n" for h, m in enumerate(markers)]
    for sep_text in ("".join(rows), "".join(rows).replace(",", ";").replace(";1;2;0.5;", ";1;2;0,5;")):
        df, _ = read_csv_candles(csv_file(tmp_path, (HEADER.decode() if ";" not in sep_text else
                                                     HEADER.decode().replace(",", ";")) + sep_text))
        assert df.close.isna().all() and df.low.eq(0.5).all()


def test_decimal_marks_are_one_per_file_and_never_scale_a_number_silently(tmp_path):
    head = "time;open;high;low;close;volume\n"
    mixed = csv_file(tmp_path, head + "2024-01-01 00:00;1,5;2;1;1,5;3\n2024-01-01 01:00;2.5;3;2;2.5;3\n")
    with pytest.raises(BotterError, match=r"the numbers mix decimal marks: '1,5' \(line 2, open\) reads only with a "
                                          r"decimal comma, '2.5' \(line 3, open\) only with a decimal point"):
        read_csv_candles(mixed)
    both_ways = csv_file(tmp_path, 'time,open,high,low,close,volume\n2024-01-01 00:00,"42,000",42100,41900,42050,2\n'
                                   '2024-01-01 01:00,42050,42300,42000,"42,200",2\n')
    with pytest.raises(BotterError, match=r"'42,000' \(line 2, open\) reads as 42000 \(a decimal point, ',' grouping "
                                          r"thousands\) or as 42 \(a decimal comma\), and no number in the file tells "
                                          "which: give decimal=point or decimal=comma"):
        read_csv_candles(both_ways)
    assert read_csv_candles(both_ways, decimal="point")[0].open.tolist() == [42000.0, 42050.0]
    assert read_csv_candles(both_ways, decimal="comma")[0].open.tolist() == [42.0, 42050.0]
    # One number that reads one way only decides for the file.
    told = csv_file(tmp_path, head + "2024-01-01 00:00;1,500;2;1;1,5;3\n2024-01-01 01:00;0,0984;3;2;2;3\n")
    assert read_csv_candles(told)[0].open.tolist() == [1.5, 0.0984]
    with pytest.raises(BotterError, match=r"line 2: '1,5' in the close column is not a number written with a "
                                          "decimal point"):
        read_csv_candles(told, decimal="point")


def test_a_line_too_long_for_the_csv_module_is_one_line(tmp_path):
    path = csv_file(tmp_path, "x" * 200_000 + "\n" + HEADER.decode() + lines(["2024-01-01 00:00", "2024-01-01 01:00"]))
    assert len(read_csv_candles(path)[0]) == 2  # a long line before the header is a preamble line
    path = csv_file(tmp_path, HEADER.decode() + lines(["2024-01-01 00:00"]) + "2024-01-01 01:00,1,2,0.5," + "9" * 400
                    + "," + "9" * 200_000 + "\n")
    with pytest.raises(BotterError, match=r"line 3: '9999999999999999999999999999999999999999' in the volume column is "
                                          "not a number"):
        read_csv_candles(path)
