"""GPU training throughput of the real botter-train loop, charts drawn inside the step.

For the jkx20 and small models it builds a synthetic dataset of --windows windows (random-walk 5m
candles, scripts/synthetic.py; the candles on the card, each batch's charts drawn there), then runs
`botter.train.fit` as botter-train does on CUDA: its automatic batch size and torch.compile
choice (override with --batch / --compile / --no-compile), bf16 autocast, channels_last. Two
epochs; the second one is timed (the first pays for compilation). Prints images/s, the batch, the
peak GPU memory, and the share of the card's bf16 peak that the model's training FLOPs (3x the
forward pass, counted from the shape module's layer sizes) reach.

    python scripts/bench_gpu.py [--windows 1000000] [--models jkx20 small] [--peak-tflops 989]
    python scripts/bench_gpu.py --cpu      # a small run on the CPU: checks the script, not a figure
"""

import argparse
import contextlib
import io
import math
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a bare checkout too
import synthetic

from botter import shapes
from botter.model import layer_specs
from botter.train import fit

# Dense bf16 peaks from the vendors' data sheets, TFLOP/s (the H200 measured ~790 on matrix work here).
PEAKS = {"H100": 989, "H200": 989, "A100": 312, "L40S": 362, "A10": 125, "4090": 165}


def train_flops(kwargs: dict) -> float:
    """FLOPs of one training step per image: 3x the forward pass's multiply-adds x 2."""
    rows = shapes.trace(layer_specs(kwargs["layers"], kwargs["head"]), (1, 64, 60))
    macs = 0
    for r in rows:
        if r.type == "Conv2d":
            k = r.kwargs["kernel_size"]
            k = k if isinstance(k, (list, tuple)) else (k, k)
            macs += math.prod(r.out_shape) * r.in_shape[0] // r.kwargs.get("groups", 1) * k[0] * k[1]
        elif r.type == "Linear":
            macs += r.in_shape[0] * r.out_shape[0]
    return 3 * 2 * macs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=1_000_000)
    ap.add_argument("--models", nargs="+", default=["jkx20", "small"])
    ap.add_argument("--batch", type=int, default=None, help="default: botter-train's automatic choice")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="default: botter-train's automatic choice")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak (default: by name)")
    ap.add_argument("--cpu", action="store_true", help="a small run on the CPU: checks the script, not a figure")
    args = ap.parse_args()
    if args.cpu:
        dev, args.windows, name = "cpu", 3000, "CPU (smoke test)"
    elif torch.cuda.is_available():
        dev, name = "cuda", torch.cuda.get_device_name(0)
    else:
        sys.exit("no CUDA device: run on a GPU machine, or pass --cpu for a smoke test")
    peak = args.peak_tflops or next((v for k, v in PEAKS.items() if k in name), None)
    windows = synthetic.windows(args.windows)
    held = min(8192, len(windows) // 10)  # validation windows
    train, val = windows.take(slice(0, len(windows) - held)), windows.take(slice(len(windows) - held, None))
    print(f"{name}, torch {torch.__version__}, {len(train):,} train windows (1 x 64 x 60 charts drawn in the step)")
    print(f"{'model':8}{'images/s':>12}{'batch':>7}{'compiled':>10}{'GPU GiB':>9}{'GFLOP/img':>11}{'of bf16 peak':>14}")
    for model in args.models:
        kwargs = synthetic.model_kwargs(model)
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):  # its epoch lines
            fitted = fit(train, val, model_kwargs=kwargs, out_dir=out, max_epochs=2, patience=9, device=dev,
                         batch_size=args.batch, compile=args.compile, progress=False)
        ips = len(train) / fitted.history["train_seconds"].iloc[-1]
        flops = train_flops(kwargs)
        memory = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else float("nan")
        share = f"{ips * flops / (peak * 1e12):.1%}" if peak else "n/a"
        compiled = "yes" if fitted.compiled else "no"
        print(f"{model:8}{ips:12,.0f}{fitted.batch_size:7}{compiled:>10}{memory:9.2f}{flops / 1e9:11.2f}{share:>14}")


if __name__ == "__main__":
    main()
