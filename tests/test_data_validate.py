"""Validation: each problem found at the right times, and the fail/drop/flag policy."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botter.config import compose
from botter.data import load_sample, validate
from botter.data.candles import from_rows
from botter.data.validate import apply_policy
from botter.errors import BotterError

POLICY = dict(compose("fetch").validate)
T0 = 1_700_000_100_000  # a 5m boundary, epoch ms
M5 = 300_000


def t(i):
    return pd.Timestamp(T0 + i * M5, unit="ms", tz="UTC")


def bad_frame():
    good = [1.0, 2.0, 0.5, 1.5, 10.0]
    rows = [[T0 + i * M5, *good] for i in range(10)]
    rows[1][1:] = [1.0, 2.0, 0.5, np.nan, 10.0]  # nan
    rows[2][1:] = [0.0, 2.0, 0.5, 1.5, 10.0]  # non_positive (and open outside [low, high])
    rows[3][1:] = [1.0, 0.4, 0.5, 0.45, 10.0]  # high_below_low (open outside too)
    rows[4][1:] = [1.0, 2.0, 0.5, 2.5, 10.0]  # outside_range
    rows[5][5] = 0.0  # zero_volume
    rows[6][0] += 1000  # off_grid
    del rows[7]  # a gap of one candle at t(7)
    rows.append([T0 + 2 * M5, *good])  # a duplicate of t(2), also out of order
    return from_rows(rows)


def test_each_problem_is_found_at_its_time():
    report = validate(bad_frame(), "5m")
    times = {name: list(ts) for name, ts in report.problems.items()}
    assert times == {
        "duplicates": [t(2)],
        "out_of_order": [t(2)],
        "off_grid": [t(6) + pd.Timedelta(seconds=1)],
        "nan": [t(1)],
        "non_positive": [t(2)],
        "high_below_low": [t(3)],
        "outside_range": [t(2), t(3), t(4)],
        "zero_volume": [t(5)],
    }
    # t(6) is off the grid and t(7) missing: the grid skips from t(5) to t(8).
    assert report.gaps == [(t(6), 2)]
    assert not report.ok
    text = report.summary()
    assert "gaps: 1 (2 candles missing)" in text
    assert "high_below_low (high < low): 1 at 2023-11-14 22:30" in text


def test_the_samples_report_their_real_gaps():
    assert validate(load_sample("ETH/BTC"), "5m").ok
    assert validate(load_sample("LTC/BTC"), "5m").ok
    xmr, dash = validate(load_sample("XMR/BTC"), "5m"), validate(load_sample("DASH/BTC"), "5m")
    assert xmr.gaps == [(pd.Timestamp("2018-01-27 14:40", tz="UTC"), 1), (pd.Timestamp("2018-01-27 22:50", tz="UTC"), 1)]
    assert dash.gaps == [(pd.Timestamp("2018-01-27 00:20", tz="UTC"), 1), (pd.Timestamp("2018-01-28 06:00", tz="UTC"), 1)]
    assert not any(len(ts) for ts in xmr.problems.values())


def test_default_policy_drops_broken_rows_and_keeps_flagged_ones():
    kept, report = apply_policy(bad_frame(), "5m", POLICY)
    # Dropped: nan t(1), non-positive t(2) (and its duplicate), high<low t(3), off-grid t(6).
    # Kept and flagged: outside_range t(4), zero volume t(5).
    assert list(kept.index) == [t(0), t(4), t(5), t(8), t(9)]
    assert kept.index.is_monotonic_increasing and kept.index.is_unique
    assert len(report.problems["outside_range"]) == 3


def test_fail_policy_raises_with_the_times():
    with pytest.raises(BotterError, match=r"zero_volume.*2023-11-14 22:40"):
        apply_policy(bad_frame(), "5m", POLICY | {"zero_volume": "fail"})
    with pytest.raises(BotterError, match="gaps"):
        apply_policy(load_sample("XMR/BTC"), "5m", POLICY | {"gaps": "fail"})


def test_a_policy_that_would_fill_or_keep_duplicates_is_refused():
    with pytest.raises(BotterError, match="validate.gaps='drop' is not allowed"):
        apply_policy(bad_frame(), "5m", POLICY | {"gaps": "drop"})
    with pytest.raises(BotterError, match="validate.duplicates='flag' is not allowed"):
        apply_policy(bad_frame(), "5m", POLICY | {"duplicates": "flag"})
    with pytest.raises(BotterError, match="not a known problem"):
        apply_policy(bad_frame(), "5m", POLICY | {"fill": "flag"})


price = st.one_of(st.floats(-1, 3, allow_nan=False), st.just(float("nan")))
row = st.tuples(st.integers(0, 30), st.integers(0, 1), price, price, price, price, st.sampled_from([0.0, 5.0]))


@settings(max_examples=60, deadline=None)
@given(st.lists(row, max_size=25), st.sampled_from(["flag", "drop"]))
def test_policy_output_is_a_candles_frame_of_input_rows_only(rows, action):
    frame = from_rows([[T0 + i * M5 + off * 1000, o, h, lo, c, v] for i, off, o, h, lo, c, v in rows])
    policy = POLICY | {k: action for k in ("off_grid", "nan", "non_positive", "high_below_low", "outside_range")}
    kept, _ = apply_policy(frame, "5m", policy)
    assert kept.index.is_monotonic_increasing and kept.index.is_unique
    assert list(kept.columns) == ["open", "high", "low", "close", "volume"]
    # Nothing invented: every kept row is the first input row at its time, values untouched.
    first = frame[~frame.index.duplicated(keep="first")]
    pd.testing.assert_frame_equal(kept, first.loc[kept.index])
    if action == "drop":
        assert validate(kept, "5m").problems["nan"].empty
        assert validate(kept, "5m").problems["high_below_low"].empty
    else:
        assert len(kept) == len(first)
