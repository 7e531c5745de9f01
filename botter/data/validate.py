"""Check candles as they arrive for the problems real data has, and apply a per-problem policy.

`apply_policy` is the one gate every candle passes on its way in (botter-fetch's pages and CSV
files, and any live feed): it reports what was wrong with the rows received, fails, drops or
flags each problem as the policy says, and returns the rows kept. `validate` only describes a
frame (the store's state). Nothing here ever fills in a price.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from botter.data.candles import COLUMNS, timeframe_ms
from botter.errors import BotterError

# Row problems in report order, with what each means.
PROBLEMS = {
    "duplicates": "open time seen before, same values",
    "changed_duplicates": "open time seen before, other values",
    "out_of_order": "open time earlier than a row before it",
    "off_grid": "open time not a multiple of the timeframe",
    "nan": "a value is missing",
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
    problem; `gaps` holds (first missing open time, number of missing candles).

    From `apply_policy` it also says what was done: `policy` is the action per problem, and
    `dropped` lists each dropped row as (open time, names of its problems), in input order."""

    timeframe: str
    rows: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    problems: dict[str, pd.DatetimeIndex] = field(default_factory=dict)
    gaps: list[tuple[pd.Timestamp, int]] = field(default_factory=list)
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
        policy=reports[0].policy,
        dropped=[d for r in reports for d in r.dropped],
    )


def _row_masks(df: pd.DataFrame, tf_ms: int, before: pd.DataFrame | None) -> dict[str, np.ndarray]:
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
            "off_grid": ms % tf_ms != 0,
            "nan": np.isnan(values).any(axis=1),
            "infinite": np.isinf(values).any(axis=1),
            "non_positive": (values[:, :4] <= 0).any(axis=1),
            "negative_volume": v < 0,
            "high_below_low": h < lo,
            "outside_range": (o < lo) | (o > h) | (c < lo) | (c > h),
            "zero_volume": v == 0,
        }


def _gaps(index: pd.DatetimeIndex, tf_ms: int, after: pd.Timestamp | None = None) -> list[tuple[pd.Timestamp, int]]:
    ms = index.as_unit("ms").asi8
    if after is not None:  # gaps after the candles kept before, not among them
        after_ms = after.value // 1_000_000
        ms = np.append(ms[ms > after_ms], after_ms)
    ms = np.unique(ms)
    ms = ms[ms % tf_ms == 0]
    steps = np.diff(ms)
    at = np.flatnonzero(steps > tf_ms)
    return [(pd.Timestamp(ms[i] + tf_ms, unit="ms", tz="UTC"), int(steps[i] // tf_ms - 1)) for i in at]


def _report(df: pd.DataFrame, timeframe: str, masks: dict, gaps: list, **kw) -> Report:
    return Report(
        timeframe=timeframe,
        rows=len(df),
        first=df.index.min() if len(df) else None,
        last=df.index.max() if len(df) else None,
        problems={name: df.index[mask] for name, mask in masks.items()},
        gaps=gaps,
        **kw,
    )


def validate(df: pd.DataFrame, timeframe: str) -> Report:
    """Describe the problems of a candles frame (index: UTC open times): gaps, repeated open times,
    disorder, off-grid times, missing or infinite values, non-positive prices, negative volume,
    high < low, open/close outside [low, high] and zero volume."""
    tf_ms = timeframe_ms(timeframe)
    return _report(df, timeframe, _row_masks(df, tf_ms, None), _gaps(df.index, tf_ms))


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
    df: pd.DataFrame, timeframe: str, policy, *, before: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, Report]:
    """Check candles as they arrive, then fail, drop or flag each problem as `policy` says.

    df: the rows received, in the order received (a frame from `botter.data.candles.from_rows`;
    missing values as NaN). before: candles accepted earlier (the previous page, or the last stored
    candle): a row repeating one of them is a duplicate, one earlier than them is out of order, and
    a gap after them is reported. policy: {problem: "fail" | "drop" | "flag"} for every name in
    ALLOWED (configs/validate/default.yaml holds the default).

    Returns the kept rows as a Candles frame (sorted, unique open times, none of `before`'s) and the
    report of the rows received, with each dropped row and its problems in `report.dropped`.
    Raises BotterError, naming the problem and its times, where a found problem is "fail".
    """
    policy = check_policy(policy)
    tf_ms = timeframe_ms(timeframe)
    masks = _row_masks(df, tf_ms, before)
    drop = np.zeros(len(df), dtype=bool)
    for name, mask in masks.items():
        if policy[name] == "drop":
            drop |= mask
    after = before.index.max() if before is not None and len(before) else None
    dropped = [(df.index[i], tuple(name for name, mask in masks.items() if mask[i])) for i in np.flatnonzero(drop)]
    report = _report(df, timeframe, masks, _gaps(df.index, tf_ms, after), policy=policy, dropped=dropped)
    failed = [n for n, t in report.problems.items() if len(t) and policy[n] == "fail"]
    if report.gaps and policy["gaps"] == "fail":
        failed.insert(0, "gaps")
    if failed:
        raise BotterError(
            f"candles fail validation ({', '.join(failed)}; set validate.<problem>=drop or flag to go on): "
            + report.summary().replace("\n", ";")
        )
    return df[~drop].sort_index(kind="stable"), report
