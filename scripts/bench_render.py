"""Images per second of the ohlc renderer vs the mplfinance renderer on the shipped candles.

Both run on one core and are timed in CPU seconds (time.process_time): mplfinance is
single-threaded, and CPU time stays honest when other jobs share the machine. Both render
windows of the same four sample symbols with the packaged configs (configs/render/*.yaml:
ohlc 64x60 grey with MA and volume, mplfinance 240x320 RGB with MA and volume): ohlc all ~23k
windows (after one warm-up call, best of --repeats), mplfinance --mpl-windows of them spread evenly.

    .venv/bin/python scripts/bench_render.py [--mpl-windows 120] [--repeats 5]
"""

import argparse
import time

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from botter.config import compose
from botter.data import load
from botter.render import render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mpl-windows", type=int, default=120, help="windows drawn by mplfinance, in total")
    ap.add_argument("--repeats", type=int, default=5, help="timed ohlc runs; the best counts")
    args = ap.parse_args()

    torch.set_num_threads(1)
    cfg = compose("render")
    d = cfg.data
    window = d.window
    candles = load(d.source, list(d.symbols), d.timeframe)
    ohlc_cfg = OmegaConf.to_container(cfg.render, resolve=True)
    mpl_cfg = OmegaConf.to_container(cfg.compare, resolve=True)

    def ohlc_all():
        return [render(df, window, **ohlc_cfg) for df in candles.values()]

    ohlc_all()  # warm-up: torch's first calls allocate and dispatch slowly
    times = []
    for _ in range(args.repeats):
        t = time.process_time()
        n_ohlc = sum(len(x) for x in ohlc_all())
        times.append(time.process_time() - t)
    ohlc_rate = n_ohlc / min(times)

    per = max(1, args.mpl_windows // len(candles))
    first = next(iter(candles.values()))
    render(first, window, ends=[window - 1], **mpl_cfg)  # warm-up: imports matplotlib and mplfinance
    n_mpl = 0
    t = time.process_time()
    with tqdm(total=per * len(candles), desc="mplfinance", unit="img") as bar:
        for df in candles.values():
            for e in np.linspace(window - 1, len(df) - 1, per).round().astype(np.int64):
                n_mpl += len(render(df, window, ends=[e], **mpl_cfg))
                bar.update()
    mpl_rate = n_mpl / (time.process_time() - t)

    print(
        f"ohlc {ohlc_cfg['height']}x{ohlc_cfg['width']}: {n_ohlc} images, best of {args.repeats}: "
        f"{min(times) * 1e3:.1f} ms, {ohlc_rate:,.0f} images/s (per CPU second, one core)"
    )
    print(
        f"mplfinance {mpl_cfg['height']}x{mpl_cfg['width']}: {n_mpl} images, {mpl_rate:,.1f} images/s (per CPU second, one core)"
    )
    print(f"render speedup vs mplfinance: {ohlc_rate / mpl_rate:,.0f}x")


if __name__ == "__main__":
    main()
