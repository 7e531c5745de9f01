"""Evaluation without sklearn: classification metrics, the two baselines, block-bootstrap confidence
intervals, the printed comparison."""

import math

import numpy as np
import pandas as pd

from botter.dataset import Windows, labels_from_returns
from botter.runs import INTERVALS
from botter.stats import annualized, period_returns, sharpe_ratio


def metrics(labels: np.ndarray, probs: np.ndarray, predicted: np.ndarray | None = None) -> dict:
    """accuracy, balanced_accuracy, roc_auc (one-vs-rest macro for 3 classes), log_loss, confusion_matrix.

    labels: (N,) class index. probs: (N, K). predicted: the hard predictions (default argmax of
    probs). confusion_matrix[i][j] counts true class i predicted as j.
    """
    k = probs.shape[1]
    predicted = probs.argmax(1) if predicted is None else predicted
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (labels, predicted), 1)
    return {
        "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
        "balanced_accuracy": balanced_accuracy(labels, predicted, k),
        "roc_auc": float(roc_auc(labels, probs, np.ones((1, len(labels))))[0]),
        "log_loss": log_loss(labels, probs),
        "confusion_matrix": cm.tolist(),
    }


def baselines(train: Windows, test: Windows, *, classes: int, flat_threshold: float = 0.0) -> dict:
    """Metrics of the two models without images (`baseline_predictions`) on the test windows."""
    return score_baselines(test.labels.astype(np.int64),
                           baseline_predictions(train, test, classes=classes, flat_threshold=flat_threshold))


def score_baselines(labels: np.ndarray, predictions: dict) -> dict:
    """{name: metrics} of baseline `predictions` ({name: (probs, predicted)}) against `labels`."""
    return {name: metrics(labels, probs, predicted) for name, (probs, predicted) in predictions.items()}


def baseline_predictions(train: Windows, test: Windows, *, classes: int, flat_threshold: float = 0.0) -> dict:
    """{name: (probabilities (N, K), hard predictions (N,))} of two models without images for the
    test windows, fitted on the train windows (both: labelled windows only).

    majority: always the most frequent class of the train split, with its train class shares as
    probabilities. previous_return_sign: the class of the window's own return
    (close of the last candle / open of the first - 1, labelled like a label return); its
    probabilities are the train split's class shares among windows of that same sign.
    """
    train_y = train.labels.astype(np.int64)
    shares = np.bincount(train_y, minlength=classes) / len(train)
    majority = np.tile(shares, (len(test), 1))  # (N, K)
    sign_train = labels_from_returns(train.past_returns(), classes=classes, flat_threshold=flat_threshold)
    sign_test = labels_from_returns(test.past_returns(), classes=classes, flat_threshold=flat_threshold)
    table = np.ones((classes, classes))  # add-one smoothing keeps log loss finite
    np.add.at(table, (sign_train, train_y), 1)
    table /= table.sum(1, keepdims=True)
    return {
        "majority": (majority, majority.argmax(1)),
        "previous_return_sign": (table[sign_test], sign_test),
    }


def roc_auc(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC (one-vs-rest macro for 3 classes) under each row of `weights` (B, N): how many times
    each sample counts, as a bootstrap resample draws it (a row of ones: the plain AUC). (B,) float."""
    k = probs.shape[1]
    aucs = np.stack([_weighted_auc(labels == c, probs[:, c], weights) for c in ([1] if k == 2 else range(k))])
    with np.errstate(all="ignore"):
        return np.where(np.isnan(aucs).all(0), np.nan, np.nansum(aucs, 0) / (~np.isnan(aucs)).sum(0))


def _weighted_auc(positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC with ties counted half, each sample weighted by weights[b]; nan where a class
    has no weight. (B,)"""
    negatives = np.flatnonzero(~positive)
    negatives = negatives[np.argsort(score[negatives], kind="stable")]
    neg_scores = score[negatives]
    below = np.zeros((len(weights), len(negatives) + 1), dtype=weights.dtype)
    np.cumsum(weights[:, negatives], 1, out=below[:, 1:])  # below[:, k]: weight of the k lowest-scored negatives
    s = score[positive]
    lo, hi = np.searchsorted(neg_scores, s, "left"), np.searchsorted(neg_scores, s, "right")
    beaten = below[:, lo] if (lo == hi).all() else (below[:, lo] + below[:, hi]) / 2  # (B, positives)
    w_pos = weights[:, positive]
    n_pos, n_neg = w_pos.sum(1, dtype=np.float64), below[:, -1].astype(np.float64)
    with np.errstate(all="ignore"):
        auc = (w_pos * beaten).sum(1, dtype=np.float64) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def log_loss(labels: np.ndarray, probs: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Mean negative log probability of the true class (weighted like CrossEntropyLoss when given)."""
    if len(labels) == 0:
        return math.nan
    nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-15, 1))
    w = np.ones(len(labels)) if weight is None else weight[labels]
    return float((w * nll).sum() / w.sum())


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray, k: int) -> float:
    """Mean recall over the classes present in `labels`."""
    present = np.bincount(labels, minlength=k)
    hits = np.bincount(labels[predicted == labels], minlength=k)
    return float(np.mean(hits[present > 0] / present[present > 0])) if present.any() else math.nan


BACKTEST_FIGURES = ("Return [%]", "Buy & Hold Return [%]", "Sharpe Ratio", "Max. Drawdown [%]", "# Trades",
                    "Fees Paid")


def backtest_figures(stats: pd.Series) -> dict:
    """The key figures of a backtest's statistics (botter.stats names) as plain numbers."""
    return {k: float(stats[k]) for k in BACKTEST_FIGURES}


# Resamples scored at once: (chunk, windows) weights stay a few tens of MB.
_CHUNK = 200
INTERVAL_METRICS = INTERVALS  # the metrics with intervals, as run folders carry them


MIN_TIMES = 3  # labelled decision times an interval needs: a resample mixes at least three blocks


def block_length(x) -> float:
    """The block length (in steps of `x`) for a circular block bootstrap of the mean of the series x.

    Politis & White's (2004) rule as corrected by Patton, Politis & White (2009): the block that
    minimises the error of the bootstrap variance, b = (2 G^2 / D)^(1/3) n^(1/3) with G = sum |k| R(k)
    and D = 4/3 (sum R(k))^2 over the lags k up to twice the first lag after which K = max(5,
    log10 n) autocorrelations in a row are insignificant (flat-top window), at most min(3 sqrt(n), n / 3).
    Long-lived dependence (slow autocorrelation decay) gives long blocks, white noise blocks of ~1.
    For an AR(1) series with coefficient phi it tends to (6 phi^2 / ((1 - phi^2)^2))^(1/3) n^(1/3).
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 4:
        return 1.0
    e = x - x.mean()
    var = e @ e / n
    if var == 0:
        return 1.0
    k_n = max(5, int(math.log10(n)))
    m_max = min(math.ceil(math.sqrt(n)) + k_n, n - 1)  # a short series has no lag as long as itself
    lags = np.arange(m_max + 1)
    acov = np.array([e[k:] @ e[: n - k] / n for k in lags])  # (m_max + 1,) autocovariance R(k)
    significant = np.abs(acov / var) >= 2 * math.sqrt(math.log10(n) / n)
    quiet = [m for m in range(1, m_max - k_n + 2) if not significant[m : m + k_n].any()]
    m = min(2 * max(quiet[0] - 1, 1) if quiet else m_max, m_max)
    k = lags[1 : m + 1]
    flat_top = np.where(k / m <= 0.5, 1.0, 2 * (1 - k / m))
    g = 2 * (flat_top * k * acov[1 : m + 1]).sum()
    long_run = acov[0] + 2 * (flat_top * acov[1 : m + 1]).sum()
    if long_run <= 0:
        return 1.0
    b = (2 * g**2 / (4 / 3 * long_run**2)) ** (1 / 3) * n ** (1 / 3)
    return float(max(1.0, min(b, 3 * math.sqrt(n), n / 3)))


def _blocks(rng, samples: int, n: int, block: int) -> np.ndarray:
    """(samples, n) positions in 0..n-1: each row `n` positions read as circular blocks of `block`
    consecutive positions starting at random."""
    starts = rng.integers(0, n, (samples, -(-n // block)))
    return ((starts[:, :, None] + np.arange(block)) % n).reshape(samples, -1)[:, :n]


def _candle_returns(equity: pd.Series) -> np.ndarray:
    """(n - 1,) returns of an equity curve from candle to candle; 0 after a ruin (equity stays 0)."""
    eq = equity.to_numpy(np.float64)
    with np.errstate(all="ignore"):
        return np.nan_to_num(eq[1:] / eq[:-1] - 1, nan=0.0)


def _sharpe(equity: pd.Series, positions: np.ndarray) -> np.ndarray:
    """Sharpe Ratio (botter.stats' definition) of the curves rebuilt from the candle returns of
    `equity` taken at `positions` (B, n - 1), each placed on the original candle times. (B,)"""
    eq = equity.to_numpy(np.float64)
    growth = np.cumprod(1 + _candle_returns(equity)[positions], axis=1)  # (B, n - 1)
    curves = eq[0] * np.concatenate([np.ones((len(positions), 1)), growth], 1)  # (B, n)
    returns, per_year = period_returns(pd.DataFrame(curves.T, index=equity.index))
    return sharpe_ratio(*annualized(returns.to_numpy().T, per_year))


def bootstrap(times, labels, probs, baselines: dict, *, horizon: int, equity: pd.Series | None = None,
              buy_hold: pd.Series | None = None, samples: int = 1000, level: float = 0.95, block: int | None = None,
              seed: int = 0) -> dict:
    """Confidence intervals for test accuracy, ROC AUC and the backtest's Sharpe Ratio, and for the
    difference to the best baseline, by a circular block bootstrap over time.

    times, labels, probs: the decision time, class and predicted probabilities (N, K) of each labelled
    test window (any symbols). baselines: {name: (probs, predicted)} (`baseline_predictions`) on the
    same windows. equity, buy_hold: the backtest's portfolio curves (botter.backtest.Result), for
    the Sharpe Ratio against buy-and-hold's; None leaves it out.

    Resampling: blocks of `block` consecutive decision times (all symbols' windows at a time go
    together, so cross-symbol correlation stays in), drawn with replacement around the circle until
    the period is filled; the backtest's candle returns are resampled in blocks of the same length
    and the curves rebuilt on the original candle times. Model and baseline are scored on the same
    resamples, so the difference's interval is paired. Intervals are percentiles (`level`).

    Block length (when `block` is None): the longest of (1) horizon + 1 candles: windows less than
    that apart share label candles, so their outcomes are dependent by construction; (2) Politis &
    White's automatic length (`block_length`) for the model's per-time accuracy series, which
    measures how long its hits and misses cluster (regimes the model suits); (3) the same for the
    strategy's and the market's candle returns: 5m returns carry little linear autocorrelation but
    their volatility clusters, and (1)-(3) are the dependence the Sharpe ratio and the accuracy
    feel. Capped at a third of the period, so a resample still mixes at least three blocks.

    Fewer than MIN_TIMES labelled decision times (a short test period): nothing is resampled, the
    intervals are NaN (verdict "n/a") and "note" says there are too few windows for an interval.
    """
    times = np.asarray(times, dtype="datetime64[ns]")
    labels = np.asarray(labels, dtype=np.int64)
    distinct, at = np.unique(times, return_inverse=True)  # at: (N,) position of each window's time
    n_times = len(distinct)
    predictors = {"model": (probs, probs.argmax(1)), **baselines}
    names = list(predictors)
    correct = np.stack([predicted == labels for _, predicted in predictors.values()], 1).astype(np.float64)  # (N, P)
    per_time = np.bincount(at, correct[:, 0], n_times) / np.bincount(at, minlength=n_times)
    found = {"horizon + 1": horizon + 1, "model accuracy": block_length(per_time)}
    if equity is not None:
        found |= {"strategy returns": block_length(_candle_returns(equity)),
                  "market returns": block_length(_candle_returns(buy_hold))}
    block = int(block or math.ceil(max(found.values())))
    block = max(1, min(block, n_times // 3))
    note = None
    if n_times < MIN_TIMES:  # no resample mixes three blocks: an interval would say nothing (NaN, "n/a")
        note = f"too few windows for an interval ({n_times} labelled decision times; at least {MIN_TIMES})"
        samples = 0
    rng = np.random.default_rng(seed)
    scores = {"accuracy": np.empty((samples, len(names))), "roc_auc": np.empty((samples, len(names)))}
    for s in range(0, samples, _CHUNK):
        rows = slice(s, min(s + _CHUNK, samples))
        drawn = _blocks(rng, rows.stop - s, n_times, block)
        counts = np.bincount((drawn + n_times * np.arange(len(drawn))[:, None]).ravel(),
                             minlength=len(drawn) * n_times).reshape(len(drawn), n_times)
        # (chunk, N) how often each window is drawn; float32 holds these counts and their sums exactly
        w = counts.astype(np.float32)[:, at]
        scores["accuracy"][rows] = w @ correct / w.sum(1, keepdims=True)
        for j, (p, _) in enumerate(predictors.values()):
            scores["roc_auc"][rows, j] = roc_auc(labels, p, w)
    ones = np.ones((1, len(labels)))
    with np.errstate(invalid="ignore"):  # no labelled window: NaN
        point = {"accuracy": ones @ correct / len(labels),
                 "roc_auc": np.array([[roc_auc(labels, p, ones)[0] for p, _ in predictors.values()]])}
    out = {"method": "circular block bootstrap over decision times", "level": level, "samples": samples,
           "block": block, "block_from": {k: round(float(v), 2) for k, v in found.items()}, "seed": seed,
           **({"note": note} if note else {})}
    for metric in ("accuracy", "roc_auc"):
        best = 1 + int(np.argmax(np.nan_to_num(point[metric][0, 1:], nan=-np.inf))) if len(names) > 1 else None
        out[metric] = _interval(point[metric][0], scores[metric], best, names[best] if best else None, level)
    if equity is not None:
        steps = len(equity) - 1
        both = np.empty((samples, 2))  # the strategy's and buy-and-hold's, on the same resamples
        for s in range(0, samples, _CHUNK):
            drawn = _blocks(rng, min(_CHUNK, samples - s), steps, max(1, min(block, steps // 3)))
            both[s : s + len(drawn)] = np.stack([_sharpe(curve, drawn) for curve in (equity, buy_hold)], 1)
        identity = np.arange(steps)[None]
        point_sharpe = np.array([_sharpe(curve, identity)[0] for curve in (equity, buy_hold)])
        out["sharpe"] = _interval(point_sharpe, both, 1, "buy_and_hold", level)
    return out


def _interval(point: np.ndarray, drawn: np.ndarray, best: int | None, name: str | None, level: float) -> dict:
    """{value, low, high} of column 0 and, against column `best`, {baseline, baseline_value,
    difference, difference_low, difference_high, verdict}."""
    q = [(1 - level) / 2, (1 + level) / 2]
    with np.errstate(all="ignore"):
        low, high = np.nanquantile(drawn[:, 0], q) if np.isfinite(drawn[:, 0]).any() else (math.nan, math.nan)
        out = {"value": float(point[0]), "low": float(low), "high": float(high)}
        if best is None:
            return out
        diff = drawn[:, 0] - drawn[:, best]
        d_low, d_high = np.nanquantile(diff, q) if np.isfinite(diff).any() else (math.nan, math.nan)
    verdict = ("n/a" if np.isnan(d_low) or np.isnan(d_high) else "better" if d_low > 0 else "worse" if d_high < 0
               else "not distinguishable")
    return out | {"baseline": name, "baseline_value": float(point[best]), "difference": float(point[0] - point[best]),
                  "difference_low": float(d_low), "difference_high": float(d_high), "verdict": verdict}


def format_figure(v: float, digits: int, sign: str = "") -> str:
    """`v` with `digits` decimals; in 3 significant digits from 10,000 up (the Sharpe Ratio of a ruined or
    wildly swinging resample can be astronomical: no 60-digit columns)."""
    return f"{v:{sign}.3g}" if abs(v) >= 1e4 else f"{v:{sign}.{digits}f}"


def format_interval(value: float, low: float, high: float, digits: int, sign: str = "") -> str:
    """"value [low, high]", each by `format_figure`."""
    return " ".join([format_figure(value, digits, sign), f"[{format_figure(low, digits, sign)},",
                     f"{format_figure(high, digits, sign)}]"])


def format_intervals(intervals: dict) -> str:
    """The intervals as a table (model, best baseline, difference) and one plain verdict line."""
    level = round(100 * intervals["level"])
    rows, verdicts = [], {}
    for metric in INTERVAL_METRICS:
        i = intervals.get(metric)
        if i is None:
            continue
        digits = 2 if metric == "sharpe" else 4
        rows.append({
            "model": format_interval(i["value"], i["low"], i["high"], digits),
            "best baseline": f"{format_figure(i['baseline_value'], digits)} {i['baseline']}",
            "model - baseline": format_interval(i["difference"], i["difference_low"], i["difference_high"], digits, "+"),
            "verdict": i["verdict"],
        })
        verdicts[metric] = i["verdict"]
    table = pd.DataFrame(rows, index=list(verdicts)).to_string()
    better = [m for m, v in verdicts.items() if v == "better"]
    verdicts = {m: v for m, v in verdicts.items() if v != "n/a"}  # too short a period for the metric (a NaN)
    if not better:
        line = (f"The model is NOT distinguishable from the baselines: on every metric the {level} % interval of "
                "its difference to the best baseline contains 0 (or it is worse).")
    else:
        line = (f"The model beats the best baseline on {', '.join(better)} (the {level} % interval of the difference "
                "excludes 0).")
    others = [m for m in verdicts if m not in better]
    if better and others:
        line += f" Not on {', '.join(others)}."
    if "note" in intervals:
        line = f"No verdict: {intervals['note']}."
    return (f"{level} % confidence intervals ({intervals['method']}: {intervals['samples']} resamples of "
            f"{intervals['block']}-candle blocks):\n{table}\n{line}")


def format_table(result: dict) -> str:
    """The test metrics of the model beside the baselines, one row per metric."""
    columns = {"model": result["test"], **result["baselines"]}
    names = ("accuracy", "balanced_accuracy", "roc_auc", "log_loss")
    table = pd.DataFrame({c: [m[n] for n in names] for c, m in columns.items()}, index=list(names))
    cms = "\n".join(f"  {c}: {m['confusion_matrix']}" for c, m in columns.items())
    return f"{table.to_string(float_format=lambda v: f'{v:.4f}')}\nconfusion matrices (rows true, columns predicted):\n{cms}"
