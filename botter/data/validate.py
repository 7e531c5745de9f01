"""Check candles as they arrive for the problems real data has, and apply a per-problem policy.

`apply_policy` is the one gate every candle passes on its way in (botter-fetch's pages and CSV
files, and any live feed): it reports what was wrong with the rows received, fails, drops or
flags each problem as the policy says, and returns the rows kept. `validate` only describes a
frame (the store's state). Nothing here ever fills in a price.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from botter.data import hours as market_hours
from botter.data.candles import COLUMNS, next_open, on_grid, slot, slot_open, to_ms
from botter.errors import BotterError

# Row problems in report order, with what each means.
PROBLEMS = {
    "duplicates": "open time seen before, same values",
    "changed_duplicates": "open time seen before, other values",
    "out_of_order": "open time earlier than a row before it",
    "off_grid": "open time not on the timeframe's grid",
    "unclosed": "closes after now: still open, or a date in the future",
    "nan": "a value is missing (empty, NaN, n/a, null or -)",
    "infinite": "a value is infinite",
    "non_positive": "a price <= 0",
    "negative_volume": "volume < 0",
    "high_below_low": "high < low",
    "outside_range": "open or close outside [low, high]",
    "zero_volume": "volume == 0",
}
# What each problem may be answered with. A repeated open time cannot be kept (the store is keyed
# by open time): the first row seen stays. Rows out of order are sorted into place when kept; a gap
# can only be flagged or fail: filling it would invent prices.
ALLOWED = {name: ("fail", "drop", "flag") for name in PROBLEMS} | {
    "duplicates": ("fail", "drop"),
    "changed_duplicates": ("fail", "drop"),
    "gaps": ("fail", "flag"),
    # The store holds only closed candles on the grid (botter.data.store checks it on every read).
    "off_grid": ("fail", "drop"),
    "unclosed": ("fail", "drop"),
}
# What was done, as the report says it.
DONE = {"drop": "dropped", "flag": "kept", "fail": "refused (policy: fail)"}
DONE_SPECIAL = {("out_of_order", "flag"): "kept, sorted into place", ("gaps", "flag"): "left as gaps",
                ("changed_duplicates", "drop"): "dropped, the first one seen kept"}


def _times(times, limit: int) -> str:
    shown = ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in times[:limit])
    return shown + (f", ... {len(times) - limit} more" if len(times) > limit else "")


@dataclass
class Report:
    """What was found in some candles. `problems[name]` holds the open times of the rows with that
    problem; `gaps` holds (first missing open time, number of missing candles) in trading time, and
    `closures` the same for the missing candles that fall where the market is closed (`hours`, see
    botter.data.hours: a weekend, a holiday), which are no gaps.

    From `apply_policy` it also says what was done: `policy` is the action per problem, and
    `dropped` lists each dropped row as (open time, names of its problems), in input order."""

    timeframe: str
    rows: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    problems: dict[str, pd.DatetimeIndex] = field(default_factory=dict)
    gaps: list[tuple[pd.Timestamp, int]] = field(default_factory=list)
    closures: list[tuple[pd.Timestamp, int]] = field(default_factory=list)
    hours: list[list[int]] | None = None
    policy: dict[str, str] | None = None
    dropped: list[tuple[pd.Timestamp, tuple[str, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.gaps and not any(len(t) for t in self.problems.values())

    def _done(self, name: str) -> str:
        if self.policy is None:
            return ""
        action = self.policy[name]
        return ": " + DONE_SPECIAL.get((name, action), DONE[action])

    def summary(self, limit: int = 5) -> str:
        """A few lines a person reads: one per problem found with the first `limit` times, and what
        was done about it."""
        span = f" from {self.first:%Y-%m-%d %H:%M} to {self.last:%Y-%m-%d %H:%M}" if self.rows else ""
        lines = [f"{self.rows} candles of {self.timeframe}{span}"]
        if self.gaps:
            missing = sum(n for _, n in self.gaps)
            shown = ", ".join(f"{t:%Y-%m-%d %H:%M} ({n} missing)" for t, n in self.gaps[:limit])
            more = f", ... {len(self.gaps) - limit} more" if len(self.gaps) > limit else ""
            lines.append(f"  gaps: {len(self.gaps)} ({missing} candles missing) at {shown}{more}{self._done('gaps')}")
        if self.closures:
            closed = sum(n for _, n in self.closures)
            lines.append(f"  closures: {len(self.closures)} ({closed} candles) where the market is closed, not gaps "
                         f"(market hours learnt from the candles: {market_hours.describe(self.hours)})")
        for name, times in self.problems.items():
            if len(times):
                lines.append(f"  {name} ({PROBLEMS[name]}): {len(times)} at {_times(times, limit)}{self._done(name)}")
        if self.ok:
            lines.append("  no problems found")
        return "\n".join(lines)

    __str__ = summary


def combine(reports: list[Report], timeframe: str) -> Report:
    """One report for rows checked in parts (the pages of a fetch), each part checked against the
    rows kept before it, so that nothing is counted twice."""
    if not reports:
        empty = pd.DatetimeIndex([], dtype="datetime64[ms, UTC]", name="time")
        return Report(timeframe, 0, None, None, problems={name: empty for name in PROBLEMS})
    received = [r for r in reports if r.rows]
    return Report(
        timeframe=timeframe,
        rows=sum(r.rows for r in reports),
        first=min((r.first for r in received), default=None),
        last=max((r.last for r in received), default=None),
        problems={name: reports[0].problems[name].append([r.problems[name] for r in reports[1:]])
                  for name in PROBLEMS},
        gaps=[g for r in reports for g in r.gaps],
        closures=[c for r in reports for c in r.closures],
        hours=reports[0].hours,
        policy=reports[0].policy,
        dropped=[d for r in reports for d in r.dropped],
    )


# The span of candles the market's hours are learnt from, at least: each weekly slot then comes 3
# times, and a hole that happens once cannot close it.
LEARN_HOURS_MIN_WEEKS = 3


def learn_hours(times: pd.DatetimeIndex, timeframe: str) -> list[list[int]] | None:
    """The market's hours (botter.data.hours.learn) from candle open times spanning three weeks or
    more; None (always open: every missing candle a gap) from fewer, which cannot tell a weekly
    closure from a hole."""
    if len(times) < 2 or times.max() - times.min() < pd.Timedelta(weeks=LEARN_HOURS_MIN_WEEKS):
        return None
    return market_hours.learn(times, timeframe)


def refuse_all_dropped(report: Report) -> None:
    """Raise BotterError where candles were received and every one was dropped: storing nothing of
    them is no success."""
    if report.rows and len(report.dropped) == report.rows:
        raise BotterError(f"every one of the {report.rows} candles received was dropped, none stored: "
                          + "; ".join(line.strip() for line in report.summary().splitlines()))


def _row_masks(df: pd.DataFrame, timeframe: str, before: pd.DataFrame | None, now: int | None) -> dict[str, np.ndarray]:
    """Per problem, which rows of `df` have it, seen after the rows of `before` (kept earlier)."""
    n = len(before) if before is not None else 0
    both = pd.concat([before, df]) if n else df
    ms = both.index.as_unit("ms").asi8
    values = both[COLUMNS].to_numpy("float64")
    codes, _ = pd.factorize(ms)
    _, first_of_code = np.unique(codes, return_index=True)
    first = values[first_of_code[codes]]
    same = ((values == first) | (np.isnan(values) & np.isnan(first))).all(axis=1)
    repeated = both.index.duplicated(keep="first")
    out_of_order = np.zeros(len(ms), dtype=bool)
    out_of_order[1:] = ms[1:] < np.maximum.accumulate(ms)[:-1]
    ms, values = ms[n:], values[n:]
    o, h, lo, c, v = values.T
    with np.errstate(invalid="ignore"):  # NaN compares False: reported as nan, not twice
        return {
            "duplicates": repeated[n:] & same[n:],
            "changed_duplicates": repeated[n:] & ~same[n:],
            "out_of_order": out_of_order[n:] & ~repeated[n:],
            "off_grid": ~on_grid(ms, timeframe),
            "unclosed": next_open(ms, timeframe) > now if now is not None else np.zeros(len(ms), dtype=bool),
            "nan": np.isnan(values).any(axis=1),
            "infinite": np.isinf(values).any(axis=1),
            "non_positive": (values[:, :4] <= 0).any(axis=1),
            "negative_volume": v < 0,
            "high_below_low": h < lo,
            "outside_range": (o < lo) | (o > h) | (c < lo) | (c > h),
            "zero_volume": v == 0,
        }


Missing = list[tuple[pd.Timestamp, int]]


def _gaps(index: pd.DatetimeIndex, timeframe: str, hours=None, after: pd.Timestamp | None = None) -> tuple[Missing, Missing]:
    """(gaps, closures): the runs of missing grid slots between the open times of `index` (after
    `after`, the last candle kept before them), as (first missing open time, candles missing). With
    market `hours`, the slots where the market is closed are closures; a run that holds both counts
    its open slots as a gap and the rest as a closure."""
    ms = index.as_unit("ms").asi8
    if after is not None:  # gaps after the candles kept before, not among them
        after_ms = to_ms(after)
        ms = np.append(ms[ms > after_ms], after_ms)
    ms = np.unique(ms)
    ms = ms[on_grid(ms, timeframe)]
    k = slot(ms, timeframe)
    missing = np.diff(k) - 1
    trading = missing if hours is None else np.diff(market_hours.positions(ms, timeframe, hours)) - 1
    first = slot_open(k[:-1] + 1, timeframe)

    def runs(counts):
        return [(pd.Timestamp(int(first[i]), unit="ms", tz="UTC"), int(counts[i])) for i in np.flatnonzero(counts)]

    return runs(trading), runs(missing - trading)


def _report(df: pd.DataFrame, timeframe: str, masks: dict, gaps: tuple[Missing, Missing], hours, **kw) -> Report:
    return Report(
        timeframe=timeframe,
        rows=len(df),
        first=df.index.min() if len(df) else None,
        last=df.index.max() if len(df) else None,
        problems={name: df.index[mask] for name, mask in masks.items()},
        gaps=gaps[0],
        closures=gaps[1],
        hours=hours,
        **kw,
    )


def validate(df: pd.DataFrame, timeframe: str, hours=None) -> Report:
    """Describe the problems of a candles frame (index: UTC open times): gaps, repeated open times,
    disorder, off-grid times, missing or infinite values, non-positive prices, negative volume,
    high < low, open/close outside [low, high] and zero volume. With market `hours`
    (botter.data.hours), missing candles where the market is closed are closures, not gaps."""
    return _report(df, timeframe, _row_masks(df, timeframe, None, None), _gaps(df.index, timeframe, hours), hours)


def check_policy(policy) -> dict:
    """The policy as a plain dict with every problem named: unknown names or actions raise BotterError."""
    policy = dict(policy)
    for name, action in policy.items():
        if name not in ALLOWED:
            raise BotterError(f"validate.{name} is not a known problem; problems are: {', '.join(ALLOWED)}")
        if action not in ALLOWED[name]:
            raise BotterError(f"validate.{name}={action!r} is not allowed; use one of {', '.join(ALLOWED[name])}")
    missing = set(ALLOWED) - set(policy)
    if missing:
        raise BotterError(f"validate policy misses {', '.join(sorted(missing))}: give fail, drop or flag for each")
    return policy


def apply_policy(
    df: pd.DataFrame, timeframe: str, policy, *, before: pd.DataFrame | None = None, now: int | None = None,
    hours=None,
) -> tuple[pd.DataFrame, Report]:
    """Check candles as they arrive, then fail, drop or flag each problem as `policy` says.

    df: the rows received, in the order received (a frame from `botter.data.candles.from_rows`;
    missing values as NaN). before: candles accepted earlier (the previous page, or the last stored
    candle): a row repeating one of them is a duplicate, one earlier than them is out of order, and
    a gap after them is reported. policy: {problem: "fail" | "drop" | "flag"} for every name in
    ALLOWED (configs/validate/default.yaml holds the default). now: the clock (epoch ms) that says
    which candles have closed (None: not checked). hours: the market's hours (botter.data.hours):
    missing candles where it is closed are closures, not gaps.

    Returns the kept rows as a Candles frame (sorted, unique open times, none of `before`'s) and the
    report of the rows received, with each dropped row and its problems in `report.dropped`.
    Raises BotterError, naming the problem and its times, where a found problem is "fail".
    """
    policy = check_policy(policy)
    masks = _row_masks(df, timeframe, before, now)
    drop = np.zeros(len(df), dtype=bool)
    for name, mask in masks.items():
        if policy[name] == "drop":
            drop |= mask
    after = before.index.max() if before is not None and len(before) else None
    dropped = [(df.index[i], tuple(name for name, mask in masks.items() if mask[i])) for i in np.flatnonzero(drop)]
    report = _report(df, timeframe, masks, _gaps(df.index, timeframe, hours, after), hours, policy=policy,
                     dropped=dropped)
    failed = [n for n, t in report.problems.items() if len(t) and policy[n] == "fail"]
    if report.gaps and policy["gaps"] == "fail":
        failed.insert(0, "gaps")
    if failed:
        raise BotterError(
            f"candles fail validation ({', '.join(failed)}; set validate.<problem>=drop or flag to go on): "
            + "; ".join(line.strip() for line in report.summary().splitlines())
        )
    return df[~drop].sort_index(kind="stable"), report
