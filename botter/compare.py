"""Run folders side by side: the config values that differ between them and their key metrics with
their confidence intervals (botter-runs, and the end of every -m sweep)."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from botter import runs
from botter.atomic import atomic_path
from botter.errors import BotterError
from botter.evaluate import INTERVAL_METRICS, format_figure, format_interval

# Plain figures besides the intervals: column -> (metrics.json section, key).
FIGURES = {"balanced_accuracy": ("test", "balanced_accuracy"), "log_loss": ("test", "log_loss"),
           "return_pct": ("backtest", "Return [%]"), "buy_hold_pct": ("backtest", "Buy & Hold Return [%]"),
           "trades": ("backtest", "# Trades")}
# Where a run without intervals (an older one) still has the value itself.
_POINT = {"accuracy": ("test", "accuracy"), "roc_auc": ("test", "roc_auc"), "sharpe": ("backtest", "Sharpe Ratio")}


def _flat(config: dict, prefix: str = "") -> dict:
    """{"trainer.lr": 0.001, ...}: every leaf of a nested config, lists as JSON text."""
    out = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flat(v, f"{key}.")
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else v
    return out


def table(found: list[runs.Run], root) -> tuple[pd.DataFrame, list[str]]:
    """(frame, keys). frame: one row per run: run (its folder under `root`), kind, every config value
    that differs between the runs (`keys`), the intervals' level, then per metric of botter.evaluate.INTERVAL_METRICS its
    value, low, high, the difference to the best baseline (diff, diff_low, diff_high) and verdict,
    then FIGURES."""
    configs = [_flat(r.config) for r in found]
    keys = sorted(set().union(*configs))
    differ = [k for k in keys if len({json.dumps(c.get(k), default=str) for c in configs}) > 1]
    rows = []
    for run, config in zip(found, configs):
        m = run.metrics
        row = {"run": run.path.relative_to(root).as_posix() if run.path != Path(root) else ".", "kind": run.kind}
        row |= {k: config.get(k) for k in differ}
        row["level"] = m.get("intervals", {}).get("level", math.nan)  # of every interval of the run
        for metric in INTERVAL_METRICS:
            i = m.get("intervals", {}).get(metric, {})
            section, key = _POINT[metric]
            row[metric] = i.get("value", m.get(section, {}).get(key, math.nan))
            for part in ("low", "high"):
                row[f"{metric}_{part}"] = i.get(part, math.nan)
            for part in ("", "_low", "_high"):
                row[f"{metric}_diff{part}"] = i.get(f"difference{part}", math.nan)
            row[f"{metric}_verdict"] = i.get("verdict", "no interval")
        row |= {name: m.get(section, {}).get(key, math.nan) for name, (section, key) in FIGURES.items()}
        rows.append(row)
    return pd.DataFrame(rows), differ


def sort(frame: pd.DataFrame, by: str, *, ascending: bool = False) -> pd.DataFrame:
    """The rows sorted by column `by` (runs without it last); BotterError naming the columns."""
    if by not in frame:
        raise BotterError(f"sort={by!r} is not a column: use one of {', '.join(frame.columns)}")
    return frame.sort_values(by, ascending=ascending, na_position="last", kind="stable", ignore_index=True)


# Differing config values shown inside the table; more go into a table of their own, one column per run.
INLINE_KEYS = 3


def format_table(frame: pd.DataFrame, config_keys: list[str]) -> str:
    """The table as printed: the differing config values, each metric with its interval, the
    difference to the best baseline with its interval, return and trades."""
    def cell(row, metric, digits):  # an older run has the value alone
        if np.isnan(row[f"{metric}_low"]):
            return format_figure(row[metric], digits)
        return format_interval(row[metric], row[f"{metric}_low"], row[f"{metric}_high"], digits)

    def diff(row, metric, digits):
        if np.isnan(row[f"{metric}_diff"]):
            return "-"
        return format_interval(*(row[f"{metric}_diff{part}"] for part in ("", "_low", "_high")), digits, "+")

    inline = config_keys if len(config_keys) <= INLINE_KEYS else []
    shown = pd.DataFrame({"run": frame["run"], "kind": frame["kind"], **{k: frame[k].map(_value) for k in inline}})
    for metric in INTERVAL_METRICS:
        digits = 2 if metric == "sharpe" else 4
        shown[metric] = [cell(row, metric, digits) for _, row in frame.iterrows()]
        shown[f"{metric} - baseline"] = [diff(row, metric, digits) for _, row in frame.iterrows()]
    shown["return %"] = frame["return_pct"].map(lambda v: f"{v:+.2f}")
    shown["trades"] = frame["trades"].map(lambda v: "-" if np.isnan(v) else f"{v:.0f}")
    text = shown.to_string(index=False)
    if not inline and config_keys:
        configs = pd.DataFrame({k: frame[k].map(_value).tolist() for k in config_keys}, index=frame["run"].tolist()).T
        text += f"\nconfig values that differ ({len(config_keys)}), one column per run:\n{configs.to_string()}"
    return text


def _value(v):
    """A config value as written: "-" where a run lacks the key, 2 not 2.0 (a column with a missing
    value turns its ints into floats)."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _short(v, n: int = 18) -> str:
    text = str(v)
    return text if len(text) <= n else text[: n - 1] + "…"


def plot(frame: pd.DataFrame, path, config_keys: list[str]) -> None:
    """Each run's accuracy, ROC AUC and Sharpe ratio with their intervals (the best baseline marked
    x), one row per run in the table's order, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import SymmetricalLogLocator

    # Each run named by its folder and, on a line below, the three values that set the runs most
    # apart (most distinct values first, then those every run has), each cut short: the table has them whole.
    shown = sorted(config_keys, key=lambda k: (-frame[k].nunique(dropna=False), frame[k].isna().sum()))[:3]
    labels = [r["run"] + "\n" + ", ".join(f"{k.rsplit('.', 1)[-1]}={_short(_value(r[k]))}" for k in shown)
              for _, r in frame.iterrows()]
    y = np.arange(len(frame))[::-1]  # the table's first row on top
    left = 0.3 + 0.07 * max(len(line) for label in labels for line in label.split("\n"))  # inches for the labels
    fig, axes = plt.subplots(1, len(INTERVAL_METRICS), figsize=(left + 3.5 * len(INTERVAL_METRICS),
                                                                1.6 + 0.6 * len(frame)), sharey=True)
    levels = " / ".join(f"{100 * x:g} %" for x in sorted(frame["level"].dropna().unique())) or "no"
    for ax, metric in zip(axes, INTERVAL_METRICS):
        v = frame[metric].to_numpy(float)
        err = np.abs(np.stack([v - frame[f"{metric}_low"], frame[f"{metric}_high"] - v]).astype(float))
        ax.errorbar(v, y, xerr=np.nan_to_num(err), fmt="o", color="tab:blue", capsize=3, label=f"model, {levels} interval")
        ax.plot(v - frame[f"{metric}_diff"], y, "x", color="tab:red", label="best baseline")
        if metric == "sharpe":
            # backtesting.py's Sharpe of a losing 5m strategy can reach -1e12: past +-1000 a log scale,
            # its linear middle wide enough that the ticks 0 and +-1e3 do not pile up.
            reach = np.nanmax(np.abs(frame[["sharpe", "sharpe_low", "sharpe_high"]].to_numpy(float)), initial=0)
            if reach > 1000:
                ax.set_xscale("symlog", linthresh=1000, linscale=2)
                ax.xaxis.set_major_locator(SymmetricalLogLocator(base=1000, linthresh=1000))
        else:
            ax.axvline(0.5, color="gray", lw=0.8)
        ax.set(title=metric, xlabel=metric)
        ax.grid(alpha=0.3)
    axes[0].set_yticks(y, labels)
    axes[0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def report(path, *, by: str = "accuracy", ascending: bool = False, out_dir=None) -> tuple[pd.DataFrame, str]:
    """Find the runs under `path`, sort them by `by`, write runs.csv and runs.png into `out_dir`
    (default `path`); returns the table and the text to print (the table, what was skipped)."""
    path = Path(path)
    if not path.is_dir():
        raise BotterError(f"path={path} is not a folder: give the folder that holds the run folders (outputs, multirun)")
    found, skipped = runs.find(path)
    note = f"skipped {len(skipped)} folder(s) that are not complete runs" if skipped else ""
    if not found:
        raise BotterError(f"no complete run folder under {path}" +
                          (f" ({note}, e.g. {skipped[0][0]}: {skipped[0][1]})" if note else ""))
    if skipped:  # each with why: a damaged folder is found and named, not silently left out
        note = "\n".join([f"{note}:", *(f"  {folder}: {why}" for folder, why in skipped)])
    frame, keys = table(found, path)
    frame = sort(frame, by, ascending=ascending)
    out = Path(out_dir or path)
    if out_dir is None and (path / "run.json").exists():  # never write into a run folder (one module writes those)
        raise BotterError(f"path={path} is a run folder: runs.csv and runs.png would go into it; give out_dir=<a "
                          "folder> for them, or path=<the folder that holds the run folders>")
    if out.exists() and not out.is_dir():
        raise BotterError(f"out_dir={out} is a file: give a folder for runs.csv and runs.png")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "runs.csv") as tmp:
        frame.to_csv(tmp, index=False)
    plot(frame, out / "runs.png", keys)
    lines = [f"{len(found)} run(s) under {path}, sorted by {by}{' (ascending)' if ascending else ''}:",
             format_table(frame, keys), *([note] if note else []), f"wrote runs.csv, runs.png in {out}"]
    text = "\n".join(lines)
    return frame, text
