"""Validation: each problem found at the right times, and the fail/drop/flag policy."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botter.config import compose
from botter.data import load_sample, validate
from botter.data.candles import from_rows, to_ms
from botter.data.validate import ALLOWED, apply_policy, combine, learn_hours, refuse_all_dropped
from botter.errors import BotterError

POLICY = dict(compose("fetch").validate)
LENIENT = POLICY | {"changed_duplicates": "drop"}
T0 = 1_700_000_100_000  # a 5m boundary, epoch ms
M5 = 300_000
GOOD = [1.0, 2.0, 0.5, 1.5, 10.0]


def t(i):
    return pd.Timestamp(T0 + i * M5, unit="ms", tz="UTC")


def bad_frame():
    rows = [[T0 + i * M5, *GOOD] for i in range(12)]
    rows[1][1:] = [1.0, 2.0, 0.5, np.nan, 10.0]  # nan
    rows[2][1:] = [0.0, 2.0, 0.5, 1.5, 10.0]  # non_positive (and open outside [low, high])
    rows[3][1:] = [1.0, 0.4, 0.5, 0.45, 10.0]  # high_below_low (open outside too)
    rows[4][1:] = [1.0, 2.0, 0.5, 2.5, 10.0]  # outside_range
    rows[5][5] = 0.0  # zero_volume
    rows[6][0] += 1000  # off_grid
    rows[8][2] = np.inf  # infinite
    rows[9][5] = -5.0  # negative_volume
    del rows[7]  # a gap of one candle at t(7)
    rows.append([T0, *GOOD])  # t(0) again, same values
    rows.append([T0 + 2 * M5, *GOOD])  # t(2) again, other values
    return from_rows(rows)


def test_each_problem_is_found_at_its_time():
    report = validate(bad_frame(), "5m")
    times = {name: list(ts) for name, ts in report.problems.items()}
    assert times == {
        "duplicates": [t(0)],
        "changed_duplicates": [t(2)],
        "out_of_order": [],  # a repeat is a repeat, not also out of order
        "off_grid": [t(6) + pd.Timedelta(seconds=1)],
        "unclosed": [],  # no clock given: not checked
        "nan": [t(1)],
        "infinite": [t(8)],
        "non_positive": [t(2)],
        "negative_volume": [t(9)],
        "high_below_low": [t(3)],
        "outside_range": [t(2), t(3), t(4)],
        "zero_volume": [t(5)],
    }
    # t(6) is off the grid and t(7) missing: the grid skips from t(5) to t(8).
    assert report.gaps == [(t(6), 2)]
    assert not report.ok
    text = report.summary()
    assert "gaps: 1 (2 candles missing)" in text
    assert "high_below_low (high < low): 1 at 2023-11-14 22:30\n" in text  # no policy: nothing said done


def test_the_samples_report_their_real_gaps():
    assert validate(load_sample("ETH/BTC"), "5m").ok
    assert validate(load_sample("LTC/BTC"), "5m").ok
    xmr, dash = validate(load_sample("XMR/BTC"), "5m"), validate(load_sample("DASH/BTC"), "5m")
    assert xmr.gaps == [(pd.Timestamp("2018-01-27 14:40", tz="UTC"), 1), (pd.Timestamp("2018-01-27 22:50", tz="UTC"), 1)]
    assert dash.gaps == [(pd.Timestamp("2018-01-27 00:20", tz="UTC"), 1), (pd.Timestamp("2018-01-28 06:00", tz="UTC"), 1)]
    assert not any(len(ts) for ts in xmr.problems.values())


def test_default_policy_drops_broken_rows_keeps_flagged_ones_and_says_why():
    kept, report = apply_policy(bad_frame(), "5m", LENIENT)
    # Kept and flagged: outside_range t(4), zero volume t(5); the first t(0) of two equal rows.
    assert list(kept.index) == [t(0), t(4), t(5), t(10), t(11)]
    assert kept.index.is_monotonic_increasing and kept.index.is_unique
    assert report.dropped == [
        (t(1), ("nan",)),
        (t(2), ("non_positive", "outside_range")),
        (t(3), ("high_below_low", "outside_range")),
        (t(6) + pd.Timedelta(seconds=1), ("off_grid",)),
        (t(8), ("infinite",)),
        (t(9), ("negative_volume",)),
        (t(0), ("duplicates",)),
        (t(2), ("changed_duplicates",)),
    ]
    text = report.summary()
    assert "13 candles of 5m from 2023-11-14 22:15 to 2023-11-14 23:10" in text
    assert "infinite (a value is infinite): 1 at 2023-11-14 22:55: dropped" in text
    assert "negative_volume (volume < 0): 1 at 2023-11-14 23:00: dropped" in text
    assert "zero_volume (volume == 0): 1 at 2023-11-14 22:40: kept" in text
    assert "changed_duplicates (open time seen before, other values): 1 at 2023-11-14 22:25: dropped, the first" in text
    assert "gaps: 1 (2 candles missing) at 2023-11-14 22:45 (2 missing): left as gaps" in text


def test_default_policy_fails_on_a_candle_sent_twice_with_other_values():
    with pytest.raises(BotterError, match=r"changed_duplicates.*22:25"):
        apply_policy(bad_frame(), "5m", POLICY)


def test_rows_are_checked_against_the_candles_kept_before_them():
    before = from_rows([[T0 + i * M5, *GOOD] for i in range(3)])
    rows = from_rows([
        [T0 + 2 * M5, *GOOD],  # the last one again
        [T0 + 1 * M5, 1.0, 2.0, 0.5, 1.5, 11.0],  # an earlier one with another volume
        [T0 + 5 * M5, *GOOD],  # after a gap of two
        [T0 + 4 * M5, *GOOD],  # late, but new
    ])
    kept, report = apply_policy(rows, "5m", LENIENT, before=before)
    assert list(kept.index) == [t(4), t(5)]
    assert list(report.problems["duplicates"]) == [t(2)]
    assert list(report.problems["changed_duplicates"]) == [t(1)]
    assert list(report.problems["out_of_order"]) == [t(4)]
    assert report.gaps == [(t(3), 1)]  # t(3) only: t(4) came, late
    assert report.rows == 4
    # A live feed hands candles one at a time: each is checked against the one before.
    _, one = apply_policy(from_rows([[T0 + 4 * M5, 1.0, 2.0, 0.5, np.nan, 10.0]]), "5m", POLICY, before=before)
    assert one.dropped == [(t(4), ("nan",))] and one.gaps == [(t(3), 1)]


def test_reports_of_pages_combine_into_one():
    frame = bad_frame().iloc[:11]  # the gap at t(6), t(7) spans the two parts
    whole = apply_policy(frame, "5m", LENIENT)[1]
    first, report1 = apply_policy(frame.iloc[:6], "5m", LENIENT)
    _, report2 = apply_policy(frame.iloc[6:], "5m", LENIENT, before=first)
    both = combine([report1, report2], "5m")
    assert (both.rows, both.first, both.last, both.gaps) == (whole.rows, whole.first, whole.last, whole.gaps)
    assert {k: list(v) for k, v in both.problems.items()} == {k: list(v) for k, v in whole.problems.items()}
    assert both.dropped == whole.dropped
    assert combine([], "5m").summary() == "0 candles of 5m\n  no problems found"


def test_fail_policy_raises_with_the_times():
    with pytest.raises(BotterError, match=r"zero_volume.*2023-11-14 22:40") as e:
        apply_policy(bad_frame(), "5m", LENIENT | {"zero_volume": "fail"})
    assert "\n" not in str(e.value) and ";  " not in str(e.value)
    assert "): 13 candles of 5m from 2023-11-14 22:15 to 2023-11-14 23:10; gaps: 1 (2 candles missing)" in str(e.value)
    with pytest.raises(BotterError, match="gaps"):
        apply_policy(load_sample("XMR/BTC"), "5m", POLICY | {"gaps": "fail"})


def test_a_policy_that_would_fill_or_keep_duplicates_is_refused():
    with pytest.raises(BotterError, match="validate.gaps='drop' is not allowed"):
        apply_policy(bad_frame(), "5m", POLICY | {"gaps": "drop"})
    with pytest.raises(BotterError, match="validate.duplicates='flag' is not allowed"):
        apply_policy(bad_frame(), "5m", POLICY | {"duplicates": "flag"})
    with pytest.raises(BotterError, match="validate.changed_duplicates='flag' is not allowed"):
        apply_policy(bad_frame(), "5m", POLICY | {"changed_duplicates": "flag"})
    with pytest.raises(BotterError, match="not a known problem"):
        apply_policy(bad_frame(), "5m", POLICY | {"fill": "flag"})
    # The store holds closed candles on the grid only: these can be dropped or fail, not kept.
    for name in ("off_grid", "unclosed"):
        with pytest.raises(BotterError, match=f"validate.{name}='flag' is not allowed; use one of fail, drop"):
            apply_policy(bad_frame(), "5m", POLICY | {name: "flag"})


price = st.one_of(st.floats(-1, 3, allow_nan=False), st.sampled_from([float("nan"), float("inf"), -float("inf")]))
row = st.tuples(st.integers(0, 30), st.integers(0, 1), price, price, price, price, st.sampled_from([0.0, 5.0, -1.0]))
VALUE_PROBLEMS = ("off_grid", "nan", "infinite", "non_positive", "negative_volume", "high_below_low", "outside_range")


@settings(max_examples=60, deadline=None)
@given(st.lists(row, max_size=25), st.sampled_from(["flag", "drop"]))
def test_policy_output_is_a_candles_frame_of_input_rows_only(rows, action):
    frame = from_rows([[T0 + i * M5 + off * 1000, o, h, lo, c, v] for i, off, o, h, lo, c, v in rows])
    policy = LENIENT | {k: action if action in ALLOWED[k] else "drop" for k in VALUE_PROBLEMS}
    kept, report = apply_policy(frame, "5m", policy)
    assert kept.index.is_monotonic_increasing and kept.index.is_unique
    assert list(kept.columns) == ["open", "high", "low", "close", "volume"]
    # Nothing invented: every kept row is the first input row at its time, values untouched.
    first = frame[~frame.index.duplicated(keep="first")]
    pd.testing.assert_frame_equal(kept, first.loc[kept.index])
    # Every row is kept or listed as dropped, with a reason.
    assert len(kept) + len(report.dropped) == len(frame)
    assert all(reasons for _, reasons in report.dropped)
    assert (kept.index.as_unit("ms").asi8 % M5 == 0).all()  # off the grid is never kept: the store refuses it
    if action == "drop":
        values = kept.to_numpy()
        assert np.isfinite(values).all() and (values[:, :4] > 0).all() and (values[:, 4] >= 0).all()
        assert (kept.high >= kept.low).all()
    else:
        assert len(kept) == len(first[first.index.as_unit("ms").asi8 % M5 == 0])


def day(text):
    return pd.Timestamp(text).tz_localize("UTC")


def frame(times):
    """Candles with good values at open times `times` (text or Timestamps)."""
    return from_rows([[to_ms(x), *GOOD] for x in times])


@pytest.mark.parametrize("timeframe, times, missing", [
    # Binance's weeks open on Monday 00:00 UTC (1970-01-01 was a Thursday).
    ("1w", ["2024-01-01", "2024-01-08", "2024-01-22"], [(day("2024-01-15"), 1)]),
    # Months open on the 1st, however long they are; a missing February is one candle.
    ("1M", ["2023-12-01", "2024-01-01", "2024-03-01", "2024-04-01"], [(day("2024-02-01"), 1)]),
    ("1d", ["2024-01-01", "2024-01-02", "2024-01-05"], [(day("2024-01-03"), 2)]),
    ("1y", ["2021-01-01", "2022-01-01", "2024-01-01"], [(day("2023-01-01"), 1)]),
])
def test_candles_on_calendar_grids_are_on_the_grid_and_their_gaps_counted_in_candles(timeframe, times, missing):
    kept, report = apply_policy(frame(times), timeframe, POLICY)
    assert len(kept) == len(times) and not len(report.problems["off_grid"])
    assert report.gaps == missing


@pytest.mark.parametrize("timeframe, time", [
    ("1w", "2024-01-04"),  # a Thursday: a week counted from 1970-01-01
    ("1M", "2024-01-31"),  # 30 days after 2024-01-01
    ("1d", "2024-01-02 05:00"),  # a local midnight (New York), not 00:00 UTC
    ("1h", "2024-01-02 05:30"),
])
def test_candles_off_a_calendar_grid_are_off_grid(timeframe, time):
    _, report = apply_policy(frame(["2024-01-01", time]), timeframe, POLICY)
    assert list(report.problems["off_grid"]) == [day(time)]


def test_candles_that_have_not_closed_by_now_are_unclosed():
    now = T0 + 10 * M5 + 1
    rows = frame([t(8), t(9), t(10), t(2000)])  # t(9) closed at t(10); t(10) is open; t(2000) a typo date
    kept, report = apply_policy(rows, "5m", POLICY, now=now)
    assert list(report.problems["unclosed"]) == [t(10), t(2000)]
    assert list(kept.index) == [t(8), t(9)]
    assert "unclosed (closes after now: still open, or a date in the future): 2 at" in report.summary()
    with pytest.raises(BotterError, match="unclosed"):
        apply_policy(rows, "5m", POLICY | {"unclosed": "fail"}, now=now)


def test_every_row_dropped_is_refused():
    rows = from_rows([[T0 + i * M5, 1.0, 2.0, 0.5, np.nan, 1.0] for i in range(3)])
    kept, report = apply_policy(rows, "5m", POLICY)
    assert len(kept) == 0
    with pytest.raises(BotterError, match=r"every one of the 3 candles received was dropped, none stored: 3 candles "
                                          r"of 5m .*; nan \(a value is missing"):
        refuse_all_dropped(report)
    refuse_all_dropped(apply_policy(rows.iloc[:0], "5m", POLICY)[1])  # nothing received: nothing refused


def test_closures_of_a_market_that_closes_are_no_gaps():
    # Daily stock candles: Monday to Friday for eight weeks, one Wednesday holiday.
    days = pd.bdate_range("2024-01-01", "2024-02-23", tz="UTC").drop(day("2024-01-17"))
    hours = learn_hours(days, "1d")
    assert hours == [[0, 7200]]  # Monday to Friday
    _, report = apply_policy(frame(days), "1d", POLICY | {"gaps": "fail"}, hours=hours)
    assert report.gaps == [] and report.ok
    assert report.closures[:2] == [(day("2024-01-06"), 2), (day("2024-01-13"), 2)]
    assert (day("2024-01-17"), 1) in report.closures
    assert sum(n for _, n in report.closures) == 7 * 2 + 1
    assert ("  closures: 8 (15 candles) where the market is closed, not gaps (market hours learnt from the candles: "
            "open Mon 00:00 - Sat 00:00 UTC; a UTC day without candles is a holiday)") in report.summary()
    assert "gaps:" not in report.summary()
    # Without the hours every missing day is a gap.
    assert len(validate(frame(days), "1d").gaps) == 8
    # Hourly candles of a market open 14:00 to 21:00 on weekdays: a missing hour inside them is a gap,
    # the nights and weekends closures.
    hourly = pd.DatetimeIndex([h for d in days for h in pd.date_range(d + pd.Timedelta("14h"), periods=7, freq="h")])
    hours = learn_hours(hourly, "1h")
    holed = hourly.drop(day("2024-01-10 16:00"))
    report = validate(frame(holed), "1h", hours)
    assert report.gaps == [(day("2024-01-10 16:00"), 1)]
    assert len(report.closures) == len(days) - 1


def test_hours_are_learnt_from_three_weeks_or_more():
    days = pd.bdate_range("2024-01-01", "2024-01-19", tz="UTC")  # two weeks and four days
    assert learn_hours(days, "1d") is None
    assert learn_hours(days.append(pd.DatetimeIndex([day("2024-01-22")])), "1d") == [[0, 7200]]
    # A few hours of crypto candles with a hole: the hole stays a gap.
    five = pd.date_range("2024-01-01", periods=50, freq="5min", tz="UTC").drop(day("2024-01-01 01:00"))
    assert learn_hours(five, "5m") is None
