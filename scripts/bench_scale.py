"""Memory of training at scale: charts drawn inside the training step vs all rendered up front.

For 1 M and 10 M windows (synthetic random-walk 5m candles over 10 symbols, scripts/synthetic.py)
each path runs in its own process, which builds the dataset, trains `--steps` steps of the `small`
model on the CPU (batches drawn from the whole dataset) and reports its peak resident memory and
training images/s:
  streaming:    the dataset holds the candles and each window's index; every batch's charts are
                drawn from the candles inside the step (what botter-train does);
  materialised: every window's chart is rendered first and kept in memory as uint8 (3,840 bytes
                each at 64 x 60), batches are cut from it (the old way). 10 M windows need ~38 GB
                of images, more than this machine's 24 GB: skipped where they would not fit.
A third process, for the biggest size, takes what comes after training: the test split (the last
15 % of the windows) is predicted, backtested and reported (statistics, trades.csv, the PNGs) as
botter-train does. Predicting it with `small` on this CPU takes minutes, so the model reads a
sample of the split (its windows/s are printed with what the whole split would take) and the
backtest and report run on the whole split with random probabilities that trade like a model
does (a position every few candles).
Ends with the line `peak RSS, 10M windows streaming: <X> GB` (goal: under 2 GB).

    .venv/bin/python scripts/bench_scale.py [--steps 200] [--batch 64] [--sizes 1000000 10000000]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

IMAGE_BYTES = 64 * 60


def child(mode: str, total: int, steps: int, batch: int) -> None:
    """One measurement, in this process: prints a JSON line."""
    import synthetic
    import torch

    from botter.train import fit

    torch.set_num_threads(os.cpu_count() or 1)
    w = synthetic.windows(total)
    if mode == "materialised":
        images = np.empty((len(w), 1, 64, 60), np.uint8)  # (N, C, H, W), all of them
        for s in range(0, len(w), 1 << 16):
            images[s : s + (1 << 16)] = w.images(np.arange(s, min(s + (1 << 16), len(w)))).numpy()
        w.cached = images
    rng = np.random.default_rng(0)
    picked = rng.choice(len(w), steps * batch + 1024, replace=False)  # batches from the whole dataset
    train, val = w.take(picked[:-1024]), w.take(picked[-1024:])
    model = synthetic.model_kwargs("small")
    with tempfile.TemporaryDirectory() as out:
        fitted = fit(train, val, model_kwargs=model, out_dir=out, max_epochs=1, batch_size=batch, device="cpu",
                     progress=False)
    seconds = float(fitted.history["train_seconds"].iloc[0])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes (Linux reports KiB)
    print(json.dumps({"windows": len(w), "peak": peak, "images_s": steps * batch / seconds}))


def after_training(total: int) -> None:
    """Predict (a sample), backtest and report the test split of `total` windows; prints a JSON line."""
    import time

    import synthetic
    import torch

    from botter import dataset
    from botter.backtest import backtest_predictions
    from botter.inference import predictions_frame, probabilities
    from botter.model import build_model
    from botter.plots import write_report

    torch.set_num_threads(os.cpu_count() or 1)
    candles = {f"S{i}/BTC": synthetic.random_candles(total // 10 + 44, seed=i) for i in range(10)}
    w = dataset.build(candles, window=20, horizon=5, classes=2, timeframe="5m", render=synthetic.RENDER,
                      progress=False)
    test = w.take(w.times >= np.quantile(w.times.astype(np.int64), 0.85).astype("datetime64[ns]"))
    model = build_model(**synthetic.model_kwargs("small")).to(memory_format=torch.channels_last)
    sample = test.take(slice(0, 20_000))
    started = time.perf_counter()
    probabilities([model], sample)
    predict_s = time.perf_counter() - started
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    p_up = np.clip(0.5 + np.cumsum(rng.normal(0, 0.02, len(test))) % 0.4 - 0.2, 0, 1)  # drifts across 0.55
    predictions = predictions_frame(test, np.stack([1 - p_up, p_up], 1), 2)
    results = backtest_predictions(predictions, candles, threshold_up=0.55, threshold_down=0.55, long_only=False,
                                   min_hold=5, fee=0.001, slippage_bps=1.0, size=1.0, cash=1.0)
    backtest_s = time.perf_counter() - started
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        write_report(results, candles, out)
    report_s = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"test": len(test), "trades": int(results["portfolio"].stats["# Trades"]),
                      "predict_rate": len(sample) / predict_s, "backtest_s": backtest_s, "report_s": report_s,
                      "peak": peak}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child[0] == "after":
            after_training(int(args.child[1]))
        else:
            child(args.child[0], int(args.child[1]), args.steps, args.batch)
        return
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    rows = {}
    for total in args.sizes:
        for mode in ("streaming", "materialised"):
            if mode == "materialised" and total * IMAGE_BYTES > 0.6 * memory:
                rows[(total, mode)] = f"skipped: {total * IMAGE_BYTES / 1e9:.0f} GB of images > 60% of RAM"
                continue
            proc = subprocess.run([sys.executable, __file__, "--child", mode, str(total), "--steps", str(args.steps),
                                   "--batch", str(args.batch)], capture_output=True, text=True,
                                  cwd=Path(__file__).parent, check=False)
            if proc.returncode:
                rows[(total, mode)] = f"failed: {proc.stderr.strip().splitlines()[-1]}"
                continue
            rows[(total, mode)] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{total:>11,} windows {mode:<13} done", file=sys.stderr)
    print(f"training `small` on the CPU, {args.steps} steps of {args.batch}, {os.cpu_count()} cores")
    print(f"{'windows':>12} {'path':<13} {'peak RSS':>10} {'images/s':>9}")
    for (total, mode), r in rows.items():
        if isinstance(r, str):
            print(f"{total:>12,} {mode:<13} {r}")
        else:
            print(f"{r['windows']:>12,} {mode:<13} {r['peak'] / 1e9:>8.2f} GB {r['images_s']:>9,.0f}")
    for total in args.sizes:
        s, m = rows.get((total, "streaming")), rows.get((total, "materialised"))
        if isinstance(s, dict) and isinstance(m, dict):
            print(f"{total:,} windows: materialised / streaming peak RSS {m['peak'] / s['peak']:.1f}x, "
                  f"images/s {m['images_s'] / s['images_s']:.2f}x")
    biggest = max(args.sizes)
    proc = subprocess.run([sys.executable, __file__, "--child", "after", str(biggest)], capture_output=True, text=True,
                          cwd=Path(__file__).parent, check=False)
    if proc.returncode:
        print(f"after training: failed: {proc.stderr.strip().splitlines()[-1]}")
    else:
        a = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"test split of {biggest:,} windows: {a['test']:,} windows, {a['trades']:,} trades; predict "
              f"{a['predict_rate']:,.0f} windows/s with `small` here (the whole split: {a['test'] / a['predict_rate']:,.0f} s; "
              f"a GPU: seconds), backtest {a['backtest_s']:.1f} s, report {a['report_s']:.1f} s, "
              f"peak RSS {a['peak'] / 1e9:.2f} GB")
    s = rows.get((biggest, "streaming"))
    if isinstance(s, dict):
        print(f"peak RSS, {biggest // 1_000_000}M windows streaming: {s['peak'] / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
