"""Walk-forward evaluation: folds over time, an ensemble per fold, one out-of-sample table.

Folds. Each fold has a train span, a validation span (early stopping) and a test span (the step),
one after another in time; the next fold's test span starts where this one's ends:

    rolling   fold 1  [ train ][ val ][ test ]
              fold 2          [ train ][ val ][ test ]
              fold 3                  [ train ][ val ][ test ]
    anchored  fold 3  [ train              ][ val ][ test ]    (train always starts at the first decision)

The split rule is botter.dataset.split's: a train window is kept only when its label is settled
(`Windows.exits(purge)`) by the first validation decision, a validation window only when settled by
the first test decision, so the `purge` candles before each boundary are left out and no label
straddles two spans. The test spans cover every decision time from the first test decision to the
last, once: every decidable window there is predicted, labelled or not. A remainder shorter than
half a step joins the last fold instead of making a sliver of its own.

Spans: an int is a count of decision times (candles of the data's grid; with several symbols,
the distinct times of all of them), a percentage like "20%" (or a float in (0, 1)) a share of the
distinct decision times, a text like "7d", "12h", "30m", "2w" a duration.

Each fold trains `len(seeds)` models that differ only by their seed and averages their softmax
(botter.inference.probabilities). They train one after another on one device, or side by side in
one process per device when `devices` lists several (`run`).
"""

import multiprocessing
import os
import re
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from botter import dataset
from botter.dataset import Windows
from botter.errors import BotterError
from botter.evaluate import baseline_predictions, metrics, score_baselines
from botter.inference import probabilities
from botter.model import build_model
from botter.train import fit, pick_device

MODES = ("rolling", "anchored")
_UNITS = {"m": "min", "h": "h", "d": "D", "w": "W"}
_END = np.datetime64("NaT")


def parse_span(value, key: str):
    """A span as written in the config: int -> candles, "20%" or a float in (0, 1) -> share of the
    decision times, "7d" / "12h" / "30m" / "2w" -> pd.Timedelta. `key` names the setting in errors."""
    given = value  # echoed as written: 200%, not 2.0
    if isinstance(value, bool):
        value = None  # neither: falls through to the error
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    share = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value) if isinstance(value, str) else None
    if share:
        value = float(share[1]) / 100
    if isinstance(value, int) and value >= 1:
        return value
    if isinstance(value, float) and 0 < value < 1:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", value) if isinstance(value, str) else None
    if match and float(match[1]) > 0:
        return pd.Timedelta(float(match[1]), _UNITS[match[2]])
    raise BotterError(f"walkforward.{key}={given} is not a span: give candles (an int >= 1), a share of the "
                      "decision times (20%, or 0.2) or a duration like 7d, 12h, 30m, 2w")


def check_settings(*, mode, train, val, step, purge, ensemble, devices, horizon: int, **_) -> None:
    """BotterError naming the walkforward.<key> for a setting that cannot run (the walkforward
    config's keys; `horizon`: data.horizon): called before any data is read or folder written."""
    if mode not in MODES:
        raise BotterError(f"walkforward.mode={mode} is not one of: {', '.join(MODES)}")
    for key, value in (("train", train), ("val", val), ("step", step)):
        parse_span(value, key)
    if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
        raise BotterError(f"walkforward.ensemble={_shown(ensemble)} must be a whole number >= 1 (models per fold)")
    if isinstance(purge, bool) or not isinstance(purge, int) or purge < horizon:
        raise BotterError(f"walkforward.purge={_shown(purge)} must be a whole number of candles >= data.horizon="
                          f"{horizon} (no label may straddle two spans)")
    if devices is not None:
        if not isinstance(devices, list) or not devices:
            raise BotterError(f"walkforward.devices={_shown(devices)} must be a list of devices, like "
                              "walkforward.devices=[cuda:0,cuda:1] (or null: trainer.device)")
        for device in devices:
            pick_device(str(device), key="walkforward.devices")


def _shown(value) -> str:
    """A value as the command line writes it (null, not None)."""
    return "null" if value is None else str(value)


@dataclass
class Fold:
    """One fold: its spans' first decision times (datetime64[ns]; test_end exclusive, NaT: open) and
    assignment (N,) int8 per window: 0 train, 1 val, 2 test, -1 none (outside or purged)."""

    number: int
    train_start: np.datetime64
    val_start: np.datetime64
    test_start: np.datetime64
    test_end: np.datetime64
    assignment: np.ndarray


def make_folds(times, exits, *, train, val, step, mode: str = "rolling") -> list[Fold]:
    """The folds over windows with decision `times` and label `exits` (`Windows.exits(purge)`),
    spans as `parse_span` reads them (see the module docstring). BotterError when not one test
    decision is left after the first train and validation spans."""
    if mode not in MODES:
        raise BotterError(f"walkforward.mode={mode!r} is not one of: {', '.join(MODES)}")
    times = np.asarray(times, dtype="datetime64[ns]")
    exits = np.asarray(exits, dtype="datetime64[ns]")
    distinct = np.unique(times)
    spans = {k: parse_span(v, k) for k, v in (("train", train), ("val", val), ("step", step))}
    spans = {k: max(1, round(v * len(distinct))) if isinstance(v, float) else v for k, v in spans.items()}
    candle = np.diff(distinct).min() if len(distinct) > 1 else None
    for key, given in (("train", train), ("val", val), ("step", step)):
        if candle is not None and isinstance(spans[key], pd.Timedelta) and spans[key] < candle:
            raise BotterError(f"walkforward.{key}={given} is shorter than one candle ({pd.Timedelta(candle)}): give "
                              "at least one candle's time, or a count of candles")

    def move(t, span, sign=1):
        """`t` moved by `span` (forward or back) on the decision times; NaT past the last one."""
        if isinstance(span, pd.Timedelta):
            t = t + sign * span.to_timedelta64()
            return t if t <= distinct[-1] else _END
        i = np.searchsorted(distinct, t) + sign * span
        return distinct[max(i, 0)] if i < len(distinct) else _END

    starts = [move(move(distinct[0], spans["train"]), spans["val"])]
    if np.isnat(starts[0]):
        raise BotterError(f"walkforward.train={train} and walkforward.val={val} leave no decision to test: "
                          f"the decisions run from {distinct[0]} to {distinct[-1]} UTC; use shorter spans or "
                          "a longer data range")
    while not np.isnat(nxt := move(starts[-1], spans["step"])):
        starts.append(nxt)
    if len(starts) > 1:  # a remainder shorter than half a step joins the fold before it
        last = starts[-1]
        step = spans["step"]
        left = distinct[-1] - last if isinstance(step, pd.Timedelta) else (distinct >= last).sum()
        if left < step / 2:
            starts.pop()
    out = []
    for k, test_start in enumerate(starts):
        test_end = starts[k + 1] if k + 1 < len(starts) else _END
        val_start = move(test_start, spans["val"], -1)
        train_start = distinct[0] if mode == "anchored" else move(val_start, spans["train"], -1)
        a = dataset.split(times, exits, val_start=val_start, test_start=test_start)
        a[(a == 0) & (times < train_start)] = -1
        if not np.isnat(test_end):
            a[(a == 2) & (times >= test_end)] = -1
        if (a == 2).any():  # a duration span can fall wholly in a market closure: nothing to test there
            out.append(Fold(len(out) + 1, train_start, val_start, test_start, test_end, a))
    return out


def check_folds(windows: Windows, folds: list[Fold], purge: int | None = None) -> None:
    """BotterError, naming the fold and what to change, when a fold's train or validation span holds
    no labelled window (`purge`: the candles left out before each boundary, named in it)."""
    for f in folds:
        for i, name in enumerate(("train", "val")):
            if not ((f.assignment == i) & (windows.labels >= 0)).any():
                raise BotterError(f"walk-forward fold {f.number} has no labelled {name} window (its train span "
                                  f"starts {f.train_start}, validation {f.val_start}, test {f.test_start} UTC): use a "
                                  f"longer walkforward.{name} span or a longer data range"
                                  + (f" (or a shorter walkforward.purge={purge}: the candles left out before "
                                     "each boundary)" if purge is not None else ""))


@dataclass
class Outcome:
    """What `run` returns.

    probs: (N, K) each window's out-of-sample probabilities (its fold's ensemble), NaN outside every
    test span. fold: (N,) the number of the fold whose test span holds the window, 0 for none.
    states: the last fold's members' weights (state dicts on the CPU). history: every member's
    epochs (fold, member, seed and botter.train's per-epoch columns). precision, batch_size: how
    the members trained.
    """

    probs: np.ndarray
    fold: np.ndarray
    states: list[dict]
    history: pd.DataFrame
    precision: str
    batch_size: int


def run(windows: Windows, folds: list[Fold], *, seeds: list[int], model_kwargs: dict, trainer: dict, work_dir,
        devices: list[str] | None = None, predict_device=None) -> Outcome:
    """Train each fold's ensemble (one member per seed) on its labelled train windows, early-stopped on
    its labelled validation windows, and predict its test windows with the ensemble.

    trainer: botter.train.fit's keyword arguments (its seed and resume are set here). work_dir: a
    folder for the members' checkpoints while they train (removed after). devices: None trains one
    member after another on trainer["device"] (one device: on that one); two or more ("cuda:0",
    "cuda:1", ...) train them side by side, one process per device, each taking the next member of
    any fold (the members are independent: a fold's do not wait for the fold before).
    predict_device: where the ensembles predict (default: trainer["device"] resolved).
    """
    classes = model_kwargs["head"]["num_classes"]
    jobs = [(f.number, seed, windows.take(f.assignment == 0).labelled(), windows.take(f.assignment == 1).labelled())
            for f in folds for seed in seeds]
    settings = {**trainer, "resume": False} | ({"device": devices[0]} if devices and len(devices) == 1 else {})
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="members-") as tmp:
        args = [(job, model_kwargs, settings, Path(tmp) / f"fold{job[0]}-seed{job[1]}") for job in jobs]
        if devices and len(devices) > 1:
            context = multiprocessing.get_context("spawn")
            queue = context.SimpleQueue()
            for d in devices:
                queue.put(d)
            with ProcessPoolExecutor(len(devices), mp_context=context, initializer=_claim_device,
                                     initargs=(queue, len(devices))) as pool:
                trained = list(pool.map(_fit_member, args))
        else:
            trained = [_fit_member(a) for a in args]
    device = predict_device or pick_device(settings.get("device", "auto"))
    probs = np.full((len(windows), classes), np.nan)
    fold_of = np.zeros(len(windows), dtype=np.int64)
    histories = []
    for f in folds:
        members = [t for (number, *_), t in zip(jobs, trained) if number == f.number]
        models = [_model(model_kwargs, t["state"]) for t in members]
        test = np.flatnonzero(f.assignment == 2)
        probs[test] = probabilities(models, windows.take(test), device=device)
        fold_of[test] = f.number
        histories += [t["history"].assign(fold=f.number, member=m + 1, seed=seeds[m]) for m, t in enumerate(members)]
    history = pd.concat(histories, ignore_index=True)
    history = history[["fold", "member", "seed", *[c for c in history.columns if c not in ("fold", "member", "seed")]]]
    last = trained[-len(seeds):]  # the last fold's members
    return Outcome(probs, fold_of, [t["state"] for t in last], history, last[0]["precision"], last[0]["batch_size"])


_DEVICE = None  # the device of this worker process (see _claim_device)


def _claim_device(queue, workers: int) -> None:
    """Pool initializer: take one device for this worker; CPU workers share the cores."""
    global _DEVICE
    _DEVICE = queue.get()
    if torch.device(_DEVICE).type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _fit_member(args) -> dict:
    """Train one member: {"state", "history", "precision", "batch_size"} (weights on the CPU)."""
    (fold, seed, train, val), model_kwargs, trainer, out_dir = args
    settings = {**trainer, "seed": seed} | ({"device": _DEVICE} if _DEVICE else {})
    print(f"fold {fold}, seed {seed}: {len(train)} train / {len(val)} validation windows")
    fitted = fit(train, val, model_kwargs=model_kwargs, out_dir=out_dir, **settings)
    state = {k: v.detach().cpu() for k, v in fitted.model.state_dict().items()}
    return {"state": state, "history": fitted.history, "precision": fitted.precision,
            "batch_size": fitted.batch_size}


def _model(model_kwargs: dict, state: dict) -> torch.nn.Module:
    model = build_model(**model_kwargs)
    model.load_state_dict(state)
    return model.to(memory_format=torch.channels_last)


def scores(windows: Windows, folds: list[Fold], outcome: Outcome, *, classes: int,
           flat_threshold: float = 0.0) -> tuple[list[dict], dict]:
    """Per fold and pooled over the out-of-sample period: the test metrics and the baselines'.

    Returns (rows, pooled). rows: one dict per fold: number, spans, windows (decided), labelled,
    "test" (botter.evaluate.metrics) and "baselines" ({name: metrics}). pooled: the labelled
    out-of-sample windows of all folds, as botter.evaluate.bootstrap takes them: times, labels,
    probs and baselines ({name: (probs, predicted)}, each fold's baselines fitted on its own train span).
    """
    rows, parts = [], []
    for f in folds:
        test = windows.take(f.assignment == 2)
        known = test.labels >= 0
        y = test.labels[known].astype(np.int64)
        p = outcome.probs[f.assignment == 2][known]
        base = baseline_predictions(windows.take(f.assignment == 0).labelled(), test.labelled(), classes=classes,
                                    flat_threshold=flat_threshold)
        rows.append({"fold": f.number, "train_start": f.train_start, "test_start": f.test_start,
                     "test_end": test.times.max(), "windows": len(test),
                     "labelled": int(known.sum()), "test": metrics(y, p) if len(y) else None,
                     "baselines": score_baselines(y, base) if len(y) else None})
        parts.append((test.times[known], y, p, base))
    pooled = {
        "times": np.concatenate([t for t, *_ in parts]),
        "labels": np.concatenate([y for _, y, *_ in parts]),
        "probs": np.concatenate([p for _, _, p, _ in parts]),
        "baselines": {name: tuple(np.concatenate([b[name][i] for *_, b in parts]) for i in range(2))
                      for name in parts[0][3]},
    }
    return rows, pooled


def fold_table(rows: list[dict], backtests: list[pd.Series]) -> pd.DataFrame:
    """The per-fold table (one row per fold): dates, windows, the model's metrics, the baselines'
    accuracy (and ROC AUC where it is not 0.5 by construction), and from `backtests` (each fold's
    portfolio statistics) its backtest return, buy-and-hold return and trades."""
    out = []
    for r, s in zip(rows, backtests):
        t, b = r["test"] or {}, r["baselines"] or {}
        row = {
            "fold": r["fold"],
            "train from": _day(r["train_start"]),
            "test from": _day(r["test_start"]),
            "test to": _day(r["test_end"]),
            "windows": r["windows"],
            "labelled": r["labelled"],
            **{k: t.get(k, np.nan) for k in ("accuracy", "balanced_accuracy", "roc_auc", "log_loss")},
            "majority acc": b.get("majority", {}).get("accuracy", np.nan),
            "prev_sign acc": b.get("previous_return_sign", {}).get("accuracy", np.nan),
            "prev_sign auc": b.get("previous_return_sign", {}).get("roc_auc", np.nan),
            "return %": s["Return [%]"],
            "buy&hold %": s["Buy & Hold Return [%]"],
            "trades": s["# Trades"],
        }
        out.append(row)
    return pd.DataFrame(out).set_index("fold")


def _day(t) -> str:
    return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M")


def plot_folds(table: pd.DataFrame, path) -> None:
    """Accuracy and ROC AUC per fold against the baselines, and each fold's backtest return against
    buy-and-hold (`fold_table`'s columns), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from botter.atomic import atomic_path

    x = table.index.to_numpy()
    model = {"lw": 2, "marker": "o", "color": "tab:blue", "label": "model"}
    majority = {"lw": 1, "marker": ".", "ls": "--", "color": "tab:gray", "label": "majority"}
    sign = {"lw": 1, "marker": ".", "ls": "--", "color": "tab:orange", "label": "previous return sign"}
    panels = [("accuracy", [("accuracy", model), ("majority acc", majority), ("prev_sign acc", sign)]),
              ("ROC AUC", [("roc_auc", model), ("prev_sign auc", sign)])]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (title, lines) in zip(axes, panels):
        for column, style in lines:
            ax.plot(x, table[column], **style)
        ax.axhline(0.5, color="black", lw=0.8)
        ax.set(title=f"{title} per fold", xlabel="fold (test span from)", ylabel=title)
    ax = axes[2]
    ax.bar(x - 0.2, table["return %"], 0.4, label="strategy", color="tab:blue")
    ax.bar(x + 0.2, table["buy&hold %"], 0.4, label="buy & hold", color="tab:gray")
    ax.axhline(0, color="black", lw=0.8)
    ax.set(title="backtest return per fold", xlabel="fold (test span from)", ylabel="return [%]")
    for ax in axes:
        ax.set_xticks(x, [f"{k}\n{d[5:10]}" for k, d in zip(x, table["test from"])])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_equity(equity: pd.Series, buy_hold: pd.Series, folds: list[Fold], path, *, title: str = "") -> None:
    """The out-of-sample equity (and buy-and-hold) with each fold's test start marked, drawdown below."""
    import matplotlib.pyplot as plt

    from botter.plots import drawdown_panel, save, thin

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, height_ratios=(3, 1))
    for line, kwargs in ((equity, {"lw": 1.2, "color": "tab:blue", "label": "strategy (each fold's ensemble)"}),
                         (buy_hold, {"lw": 1, "color": "tab:gray", "alpha": 0.8, "label": "buy & hold"})):
        line = thin(line)  # drawn at the chart's resolution, however long the period
        top.plot(line.index, line, **kwargs)
    for f in folds:
        start = pd.Timestamp(f.test_start, tz="UTC")
        for ax in (top, bottom):
            ax.axvline(start, color="tab:orange", lw=1, ls="--")
        top.annotate(f"fold {f.number}", (start, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                     textcoords="offset points", color="tab:orange", fontsize=9)
    top.set(ylabel="equity (quote)", title=title)
    top.legend(loc="lower left")
    top.grid(alpha=0.3)
    drawdown_panel(bottom, equity)
    save(fig, path)
