"""Data-pipeline overhead of training: one epoch through botter.train vs a bare loop, same tensors.

Pipeline: `botter.train.fit` for one epoch on the train split of the packaged `botter-train`
config (sample data, ohlc 64x60, model small): every batch's charts drawn from the candles inside
the training step, converted, class-weighted loss, gradient clipping, LR schedule, progress bar.
Its `train_seconds` (the steps, without the val pass and file writes) is compared with a bare loop
over the same batches already drawn and converted to float in memory: forward, loss, backward,
AdamW step, same model, batch size and number of steps. Prints wall seconds and their ratio
(goal: the pipeline, drawing included, adds at most 15%).

    .venv/bin/python scripts/bench_train.py [--windows 16000] [overrides ...]
"""

import argparse
import tempfile
import time

import pandas as pd
import torch
from omegaconf import OmegaConf

from botter import dataset
from botter.config import compose
from botter.data import load
from botter.model import build_model
from botter.train import fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=None, help="train windows to use (default: the whole split)")
    ap.add_argument("overrides", nargs="*", help="botter-train config overrides, e.g. trainer.batch_size=512")
    args = ap.parse_args()

    cfg = OmegaConf.to_container(compose("train", ["trainer.progress=false", *args.overrides]), resolve=True)
    d, r, t = cfg["data"], cfg["render"], cfg["trainer"]
    candles = load(d["source"], d["symbols"], d["timeframe"], exchange=d["exchange"], start=d["start"],
                   end=d["end"], data_dir=cfg["paths"]["data_dir"], **d.get("params", {}))
    w = dataset.build(candles, window=d["window"], horizon=d["horizon"], classes=d["classes"],
                      timeframe=d["timeframe"], render=r)
    split = {k: v for k, v in cfg["dataset"]["split"].items() if k != "purge"}
    a = dataset.split(w.times, w.exits(d["horizon"]), **split)
    train, val = (w.take(a == i).labelled() for i in (0, 1))
    if args.windows:
        train = train.take(slice(0, args.windows))
    val = val.take(slice(0, 256))  # the val pass is not timed
    model_kwargs = {**cfg["model"], "input_hw": [r["height"], r["width"]]}
    n, bs = len(train), t["batch_size"] or 256
    print(f"{n} train windows, batch {bs}, {torch.get_num_threads()} threads, model {d['window']}-candle "
          f"{r['height']}x{r['width']}")

    # Bare loop: the same batches, already float and channels_last in memory.
    images = train.images()  # (N, C, H, W) uint8, drawn up front
    labels = torch.from_numpy(train.labels.astype("int64"))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    batches = [
        (images[idx].float().div(255).contiguous(memory_format=torch.channels_last), labels[idx])
        for idx in order.split(bs)
    ]

    def bare_loop(batches):
        torch.manual_seed(t["seed"])
        net = build_model(**model_kwargs).to(memory_format=torch.channels_last).train()
        opt = torch.optim.AdamW(net.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
        for x, y in batches:
            loss = torch.nn.functional.cross_entropy(net(x), y)  # (B, classes) logits -> scalar
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    bare_loop(batches[:3])  # warm-up: oneDNN builds its kernels on the first steps
    wall = time.perf_counter()
    bare_loop(batches)
    bare = time.perf_counter() - wall

    with tempfile.TemporaryDirectory() as out:
        fit(train, val, model_kwargs=model_kwargs, out_dir=out, **{**t, "max_epochs": 1, "device": "cpu"})
        # The epoch's training steps alone, as train() timed them (its val pass and files excluded).
        pipe = pd.read_csv(f"{out}/metrics.csv").iloc[0]["train_seconds"]
    print(f"{'':10}{'wall s':>10}{'images/s':>10}")
    for name, seconds in (("bare", bare), ("pipeline", pipe)):
        print(f"{name:10}{seconds:10.2f}{n / seconds:10.0f}")
    print(f"pipeline / bare: wall {pipe / bare:.3f}x (overhead {100 * (pipe / bare - 1):+.1f}%)")


if __name__ == "__main__":
    main()
