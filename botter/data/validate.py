"""Check candles for the problems real data has, report them, and apply a per-problem policy.

The report lists every problem with the candle open times it concerns. The policy says, per
problem, "fail" (raise), "drop" (remove the rows) or "flag" (keep them, listed in the report).
Nothing here ever fills in a price.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from botter.data.candles import COLUMNS, timeframe_ms
from botter.errors import BotterError

# Row problems in report order, with what each means.
PROBLEMS = {
    "duplicates": "open time seen before",
    "out_of_order": "open time earlier than the row before",
    "off_grid": "open time not a multiple of the timeframe",
    "nan": "a value is missing",
    "non_positive": "a price <= 0",
    "high_below_low": "high < low",
    "outside_range": "open or close outside [low, high]",
    "zero_volume": "volume == 0",
}
# What each problem may be answered with. Duplicates cannot be kept (the store is keyed by open
# time) and rows out of order are sorted into place when kept; a gap can only be flagged or fail:
# filling it would invent prices.
ALLOWED = {name: ("fail", "drop", "flag") for name in PROBLEMS} | {
    "duplicates": ("fail", "drop"),
    "gaps": ("fail", "flag"),
}


@dataclass
class Report:
    """What `validate` found. `problems[name]` holds the open times of the rows with that problem;
    `gaps` holds (first missing open time, number of missing candles)."""

    timeframe: str
    rows: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    problems: dict[str, pd.DatetimeIndex] = field(default_factory=dict)
    gaps: list[tuple[pd.Timestamp, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.gaps and not any(len(t) for t in self.problems.values())

    def summary(self, limit: int = 5) -> str:
        """A few lines a person reads: one per problem found, with the first `limit` times."""
        lines = [f"{self.rows} candles of {self.timeframe} from {self.first} to {self.last}"]
        if self.gaps:
            missing = sum(n for _, n in self.gaps)
            shown = ", ".join(f"{t:%Y-%m-%d %H:%M} ({n} missing)" for t, n in self.gaps[:limit])
            more = f", ... {len(self.gaps) - limit} more" if len(self.gaps) > limit else ""
            lines.append(f"  gaps: {len(self.gaps)} ({missing} candles missing) at {shown}{more}")
        for name, times in self.problems.items():
            if len(times):
                shown = ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in times[:limit])
                more = f", ... {len(times) - limit} more" if len(times) > limit else ""
                lines.append(f"  {name} ({PROBLEMS[name]}): {len(times)} at {shown}{more}")
        if self.ok:
            lines.append("  no problems found")
        return "\n".join(lines)

    __str__ = summary


def _row_masks(df: pd.DataFrame, tf_ms: int) -> dict[str, np.ndarray]:
    ms = df.index.as_unit("ms").asi8
    o, h, lo, c, v = (df[k].to_numpy("float64") for k in COLUMNS)
    prices = np.stack([o, h, lo, c])
    out_of_order = np.zeros(len(ms), dtype=bool)
    out_of_order[1:] = ms[1:] < np.maximum.accumulate(ms)[:-1]
    with np.errstate(invalid="ignore"):  # NaN compares False: reported as nan, not twice
        return {
            "duplicates": df.index.duplicated(keep="first"),
            "out_of_order": out_of_order,
            "off_grid": ms % tf_ms != 0,
            "nan": np.isnan(df[COLUMNS].to_numpy("float64")).any(axis=1),
            "non_positive": (prices <= 0).any(axis=0),
            "high_below_low": h < lo,
            "outside_range": (o < lo) | (o > h) | (c < lo) | (c > h),
            "zero_volume": v == 0,
        }


def _gaps(index: pd.DatetimeIndex, tf_ms: int) -> list[tuple[pd.Timestamp, int]]:
    ms = np.unique(index.as_unit("ms").asi8)
    ms = ms[ms % tf_ms == 0]
    steps = np.diff(ms)
    at = np.flatnonzero(steps > tf_ms)
    return [(pd.Timestamp(ms[i] + tf_ms, unit="ms", tz="UTC"), int(steps[i] // tf_ms - 1)) for i in at]


def validate(df: pd.DataFrame, timeframe: str) -> Report:
    """Report gaps, duplicates, disorder, off-grid times, NaN, non-positive prices, high < low,
    open/close outside [low, high] and zero volume in a candles frame (index: UTC open times)."""
    tf_ms = timeframe_ms(timeframe)
    masks = _row_masks(df, tf_ms)
    return Report(
        timeframe=timeframe,
        rows=len(df),
        first=df.index.min() if len(df) else None,
        last=df.index.max() if len(df) else None,
        problems={name: df.index[mask] for name, mask in masks.items()},
        gaps=_gaps(df.index, tf_ms),
    )


def check_policy(policy: dict) -> dict:
    """The policy with every problem named: unknown names or actions raise BotterError."""
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


def apply_policy(df: pd.DataFrame, timeframe: str, policy: dict) -> tuple[pd.DataFrame, Report]:
    """Validate `df`, then fail, drop or flag each problem as `policy` says.

    Returns the kept candles as a Candles frame (sorted, unique open times) and the report of the
    input. Raises BotterError, naming the problem and its times, where a found problem is "fail".
    """
    policy = check_policy(policy)
    report = validate(df, timeframe)
    failed = [n for n, t in report.problems.items() if len(t) and policy[n] == "fail"]
    if report.gaps and policy["gaps"] == "fail":
        failed.insert(0, "gaps")
    if failed:
        raise BotterError(
            f"candles fail validation ({', '.join(failed)}; set validate.<problem>=drop or flag to go on): "
            + report.summary().replace("\n", ";")
        )
    masks = _row_masks(df, timeframe_ms(timeframe))
    drop = np.zeros(len(df), dtype=bool)
    for name, mask in masks.items():
        if policy[name] == "drop":
            drop |= mask
    kept = df[~drop]
    return kept[~kept.index.duplicated(keep="first")].sort_index(kind="stable"), report
