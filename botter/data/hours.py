"""Market hours: which missing candles are closures (a weekend, a holiday) and which are gaps.

A crypto market never closes, so every missing candle is a gap and a chart across it is not the
chart the model learnt from. A stock or FX market closes: its weekend or holiday is no hole in the
data, and a chart of 20 trading days simply skips it. botter describes a market's hours as the
weekly times it trades, `hours`: None for a market that never closes, else a list of
[start, end) minute-of-week ranges, Monday 00:00 UTC = 0 (so [[0, 7200]] is Monday to Friday).
With hours, a UTC day without a single candle is a holiday: for daily candles every missing
trading day is then a closure, for intraday ones a missing candle on a day that has others is a gap.

`learn` finds them from the candles (a weekly slot is open when at least half of the weeks have a
candle in it); `positions` numbers the candles in trading time, so that candles are consecutive
when their positions are. It reads only the candles up to the one it numbers, so the numbering of
the past never depends on later candles.
"""

import numpy as np
import pandas as pd

from botter.data.candles import timeframe_ms, to_ms
from botter.errors import BotterError

MINUTE_MS = 60_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _slot(ms: np.ndarray, tf_ms: int) -> np.ndarray:
    """Index of each time's timeframe slot in its week (Monday 00:00 UTC starts slot 0).
    1970-01-01 was a Thursday: three days after a Monday."""
    return ((ms + 3 * DAY_MS) % WEEK_MS) // tf_ms


def _weekly(tf_ms: int) -> bool:
    """Whether a week is a whole number of candles no longer than a day (hours make sense)."""
    return tf_ms <= DAY_MS and WEEK_MS % tf_ms == 0


def learn(times: pd.DatetimeIndex, timeframe: str) -> list[list[int]] | None:
    """The weekly hours of a market from its candle open times: None when it never closes.

    A slot of the week (one timeframe long) is open when at least half of its occurrences between
    the first and the last candle hold a candle, so a few holes do not close a slot and a stray
    weekend candle does not open one; a slot that occurs only once is open (one week cannot tell).
    """
    tf = timeframe_ms(timeframe)
    ms = np.unique(times.as_unit("ms").asi8)
    if len(ms) < 2 or not _weekly(tf):
        return None
    slots = WEEK_MS // tf
    hits = np.bincount(_slot(ms, tf), minlength=slots)
    n = (ms[-1] - ms[0]) // tf + 1  # candles on the grid from the first to the last
    first = _slot(ms[:1], tf)[0]
    occurrences = n // slots + (((np.arange(slots) - first) % slots) < n % slots)
    # A slot seen once cannot tell a closure from a gap: it counts as open (a short training part
    # of a market that never closes must not close the slots its gaps happen to fall in).
    open_ = (2 * hits >= occurrences) | (occurrences < 2)
    if open_.all():
        return None
    # Runs of open slots -> [start, end) minutes of the week.
    edges = np.flatnonzero(np.diff(np.r_[0, open_.astype(np.int8), 0]))
    minutes = tf // MINUTE_MS
    return [[int(a * minutes), int(b * minutes)] for a, b in edges.reshape(-1, 2)]


def check(hours) -> list[list[int]] | None:
    """`hours` as given in a config ("always", None or ranges) in their canonical form."""
    if hours in (None, "always"):
        return None
    try:
        ranges = [[int(a), int(b)] for a, b in hours]
    except (TypeError, ValueError) as e:
        raise BotterError(f"data.hours={hours!r} must be auto, always or a list of [start, end) minutes of "
                          "the week (Monday 00:00 UTC = 0), like [[0, 7200]] for Monday to Friday") from e
    for a, b in ranges:
        if not 0 <= a < b <= WEEK_MS // MINUTE_MS:
            raise BotterError(f"data.hours range [{a}, {b}] must satisfy 0 <= start < end <= 10080 (minutes of a week)")
    return ranges


def describe(hours) -> str:
    """A line a person reads: "always open" or the open hours, like "Mon 00:00 - Sat 00:00 UTC"."""
    if hours is None:
        return "always open (every missing candle is a gap)"

    def at(minute):
        day, rest = divmod(minute % (7 * 1440), 1440)
        return f"{WEEKDAYS[day]} {rest // 60:02d}:{rest % 60:02d}"

    return "open " + ", ".join(f"{at(a)} - {at(b)}" for a, b in hours) + " UTC; a UTC day without candles is a holiday"


def positions(ms: np.ndarray, timeframe: str, hours) -> np.ndarray:
    """Trading-time position of each candle (open times in epoch ms, sorted, unique, on the
    timeframe's grid), int64: two candles are consecutive in trading time when their positions
    differ by one. Without hours this is the number of timeframes since the first candle; with
    hours, only open times count (see the module docstring)."""
    ms = np.asarray(ms, dtype=np.int64)
    tf = timeframe_ms(timeframe)
    if len(ms) == 0:
        return ms.copy()
    if hours is None or not _weekly(tf):
        return (ms - ms[0]) // tf
    grid = np.arange(ms[0], ms[-1] + tf, tf)
    at = np.searchsorted(grid, ms)
    slot_minute = _slot(grid, tf) * (tf // MINUTE_MS)
    is_open = np.zeros(len(grid), dtype=bool)
    for a, b in hours:
        is_open |= (slot_minute >= a) & (slot_minute < b)
    # A day without any candle is a holiday (so with daily candles of a market that closes, a
    # missing trading day is always taken for one: one candle a day cannot tell them apart).
    is_open &= np.isin(grid // DAY_MS, np.unique(ms // DAY_MS))
    is_open[at] = True  # a candle that exists is always in trading time
    return (np.cumsum(is_open) - 1)[at]


def resolve(setting, candles: dict[str, pd.DataFrame], timeframe: str, until=None) -> list[list[int]] | None:
    """data.hours as a config gives it: "auto" learns the hours from `candles` together, those that
    open before `until` (a time; None: all of them) so that a run learns them from its training part
    alone, never from the candles it is tested on; "always" (or null) means a market that never
    closes, a list gives the ranges."""
    if setting == "auto":
        ms = np.concatenate([df.index.as_unit("ms").asi8 for df in candles.values()]) if candles else np.zeros(0, np.int64)
        if until is not None:
            ms = ms[ms < to_ms(until)]
        return learn(pd.DatetimeIndex(ms.astype("datetime64[ms]")).tz_localize("UTC"), timeframe)
    return check(setting)
