"""Confidence intervals: the block length, the weighted AUC, the bootstrap's Sharpe and its intervals."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botter.backtest import backtest
from botter.evaluate import block_length, bootstrap, format_intervals, metrics, roc_auc


def ar1(phi: float, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, e = np.zeros(n), rng.normal(size=n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


@pytest.mark.parametrize("phi", [0.5, 0.8])
def test_block_length_of_an_ar1_series_is_the_theoretical_optimum(phi):
    n = 20_000
    # Politis & White's optimal circular block for an AR(1): (6 phi^2 / (1 - phi^2)^2)^(1/3) n^(1/3).
    theory = (6 * phi**2 / (1 - phi**2) ** 2) ** (1 / 3) * n ** (1 / 3)
    # One estimate scatters by ~10 % (seed 0 at phi 0.8: 102): the median of five series is within 10 %.
    assert np.median([block_length(ar1(phi, n, seed)) for seed in range(5)]) == pytest.approx(theory, rel=0.1)


def test_block_length_of_white_noise_and_constants_is_one():
    assert block_length(np.random.default_rng(0).normal(size=5000)) < 2
    assert block_length(np.ones(100)) == 1.0


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_weighted_auc_is_the_auc_of_the_samples_repeated(data):
    n = data.draw(st.integers(2, 40))
    labels = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    scores = np.array(data.draw(st.lists(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]), min_size=n, max_size=n)))
    counts = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    probs = np.stack([1 - scores, scores], 1)
    weighted = roc_auc(labels, probs, counts[None].astype(float))[0]
    repeated = np.repeat(np.arange(n), counts)
    pos, neg = scores[repeated][labels[repeated] == 1], scores[repeated][labels[repeated] == 0]
    if len(pos) == 0 or len(neg) == 0:
        assert np.isnan(weighted)
        return
    # Every (positive, negative) pair by hand: 1 when ranked right, 1/2 for a tie.
    pairs = (pos[:, None] > neg[None]).mean() + (pos[:, None] == neg[None]).mean() / 2
    assert weighted == pytest.approx(pairs)


def test_three_class_auc_is_the_macro_one_vs_rest_mean():
    labels = np.array([0, 1, 2, 2, 1, 0])
    probs = np.array([[.6, .3, .1], [.2, .5, .3], [.1, .2, .7], [.3, .3, .4], [.4, .4, .2], [.3, .4, .3]])
    m = metrics(labels, probs)
    one_vs_rest = [roc_auc((labels == c).astype(int), np.stack([1 - probs[:, c], probs[:, c]], 1),
                           np.ones((1, 6)))[0] for c in range(3)]
    assert m["roc_auc"] == pytest.approx(np.mean(one_vs_rest))


def candles(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    close = np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    index = pd.date_range("2018-01-10", periods=n, freq="5min", tz="UTC", name="time")
    return pd.DataFrame({"open": np.r_[1.0, close[:-1]], "close": close}, index=index)


def coin_flips(n_times, symbols=4, p=0.7, seed=0):
    """Windows of `symbols` symbols at each of n_times times whose model is right with probability p."""
    rng = np.random.default_rng(seed)
    times = np.repeat(pd.date_range("2018-01-10", periods=n_times, freq="5min").to_numpy(), symbols)
    labels = rng.integers(0, 2, len(times))
    right = rng.random(len(times)) < p
    up = np.where(right == (labels == 1), 0.8, 0.2)
    majority = np.tile([0.5, 0.5], (len(times), 1))
    return times, labels, np.stack([1 - up, up], 1), {"majority": (majority, np.zeros(len(times), int))}


def test_intervals_cover_the_truth_with_the_binomial_width_and_are_seeded():
    times, labels, probs, base = coin_flips(2500)
    out = bootstrap(times, labels, probs, base, horizon=5)
    acc = out["accuracy"]
    assert acc["low"] < 0.7 < acc["high"] and acc["low"] < acc["value"] < acc["high"]
    # Independent hits: the interval is about +-1.96 binomial standard deviations wide.
    assert acc["high"] - acc["low"] == pytest.approx(2 * 1.96 * np.sqrt(0.21 / len(labels)), rel=0.25)
    assert acc["baseline"] == "majority" and acc["verdict"] == "better" and acc["difference_low"] > 0.15
    assert out["block"] == 6 and out["block_from"]["horizon + 1"] == 6  # independent hits: the horizon decides
    assert bootstrap(times, labels, probs, base, horizon=5) == out
    assert bootstrap(times, labels, probs, base, horizon=5, seed=1) != out


def test_clustered_hits_get_longer_blocks_and_wider_intervals():
    n = 2500
    times, labels, _, base = coin_flips(n, symbols=1)
    # The model is right in long streaks (a regime it suits, then one it does not): AR(1) hits.
    right = ar1(0.95, n, seed=3) > 0
    up = np.where(right == (labels == 1), 0.8, 0.2)
    clustered = bootstrap(times, labels, np.stack([1 - up, up], 1), base, horizon=5)
    iid = bootstrap(*coin_flips(n, symbols=1, p=right.mean())[:3], base, horizon=5)
    assert clustered["block"] > 3 * iid["block"]
    width = {k: v["accuracy"]["high"] - v["accuracy"]["low"] for k, v in (("c", clustered), ("i", iid))}
    assert width["c"] > 2 * width["i"]


def test_sharpe_point_is_the_backtests_own_and_shuffled_labels_are_not_distinguishable():
    df = candles()
    rng = np.random.default_rng(2)
    target = np.repeat(rng.choice([-1, 0, 1], len(df) // 10), 10)
    result = backtest(df, target, fee=0.0, slippage_bps=0.0, size=1.0)
    times = df.index.tz_localize(None).to_numpy()
    labels = rng.integers(0, 2, len(df))
    probs = np.stack([1 - rng.random(len(df)), rng.random(len(df))], 1)  # unrelated to the labels: chance
    probs /= probs.sum(1, keepdims=True)
    majority = np.tile([0.5, 0.5], (len(df), 1))
    out = bootstrap(times, labels, probs, {"majority": (majority, np.zeros(len(df), int))}, horizon=5,
                    equity=result.equity, buy_hold=result.buy_hold)
    assert out["sharpe"]["value"] == pytest.approx(result.stats["Sharpe Ratio"], rel=1e-9)
    assert out["sharpe"]["baseline"] == "buy_and_hold"
    for metric in ("accuracy", "roc_auc"):
        assert out[metric]["low"] < 0.5 < out[metric]["high"], metric
    assert out["roc_auc"]["verdict"] == "not distinguishable"
    text = format_intervals(out)
    assert "NOT distinguishable from the baselines" in text and "sharpe" in text


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 8])
def test_short_periods_give_a_block_length_and_too_few_windows_says_so(n):
    from botter.evaluate import MIN_TIMES, block_length, bootstrap, format_intervals

    rng = np.random.default_rng(n)
    assert 1 <= block_length(rng.normal(size=n)) <= max(1, n / 3)
    times = pd.date_range("2024-01-01", periods=n, freq="5min").to_numpy()
    labels = np.arange(n) % 2
    probs = np.column_stack([1 - np.linspace(0.2, 0.8, n), np.linspace(0.2, 0.8, n)])
    base = {"majority": (np.full((n, 2), 0.5), np.zeros(n, dtype=np.int64))}
    curve = pd.Series(np.linspace(1, 1.1, n + 6), index=pd.date_range("2024-01-01", periods=n + 6, freq="5min"))
    out = bootstrap(times, labels, probs, base, horizon=5, equity=curve, buy_hold=curve, samples=50)
    text = format_intervals(out)
    if n < MIN_TIMES:
        assert "too few windows for an interval" in out["note"] and "too few windows for an interval" in text
        assert all(np.isnan(out[m]["low"]) and out[m]["verdict"] == "n/a" for m in ("accuracy", "roc_auc", "sharpe"))
    else:
        assert "note" not in out and out["accuracy"]["low"] <= out["accuracy"]["value"] <= out["accuracy"]["high"]
