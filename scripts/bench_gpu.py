"""Training throughput of the jkx20 model on a GPU: the botter.train recipe vs plain fp32.

Standalone: needs only torch and this repository (botter.model builds the CNN from the layer
specs of configs/model/jkx20.yaml). Synthetic 1 x 64 x 60 uint8 images (sparse white pixels like
the ohlc charts) and random labels, all on the device. For each setting it trains --steps AdamW
steps of --batch images after --warmup steps and prints images/s and peak GPU memory:
  recipe: bf16 autocast (where supported), channels_last, uint8 batches cut on the GPU;
  fp32:   float32, contiguous (NCHW) tensors, the same batches.
Prints the card's name and recipe/fp32 ratio. --cpu runs a tiny version on the CPU (a smoke test).

    python scripts/bench_gpu.py [--steps 300] [--batch 256] [--compile] [--cpu]
"""

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a bare checkout too
from botter.model import build_model


def jkx20_kwargs(classes: int = 2) -> dict:
    """build_model kwargs from configs/model/jkx20.yaml for a 1 x 64 x 60 image (no Hydra needed)."""
    cfg = yaml.safe_load((ROOT / "configs" / "model" / "jkx20.yaml").read_text())
    return {"in_channels": 1, "layers": cfg["layers"], "head": {**cfg["head"], "num_classes": classes},
            "input_hw": (64, 60)}


def run(dev: torch.device, *, recipe: bool, steps: int, warmup: int, batch: int, compile: bool) -> tuple[float, float]:
    """(images per second, peak GPU memory in GiB) of `steps` training steps."""
    torch.manual_seed(0)
    n = batch * 16
    images = ((torch.rand(n, 1, 64, 60, device=dev) < 0.08) * 255).to(torch.uint8)  # (N, 1, 64, 60)
    labels = torch.randint(0, 2, (n,), device=dev)
    fmt = torch.channels_last if recipe else torch.contiguous_format
    net = build_model(**jkx20_kwargs()).to(dev, memory_format=fmt).train()
    model = torch.compile(net) if compile else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    bf16 = recipe and dev.type == "cuda" and torch.cuda.is_bf16_supported()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext()
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    for i in range(warmup + steps):
        if i == warmup:
            if cuda:
                torch.cuda.synchronize(dev)
            started = time.perf_counter()
        idx = torch.randint(0, n, (batch,), device=dev)
        x = images[idx].float().div_(255).contiguous(memory_format=fmt)  # (B, 1, 64, 60)
        with amp:
            loss = torch.nn.functional.cross_entropy(model(x).float(), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if cuda:
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else float("nan")
    return steps * batch / seconds, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (both settings)")
    ap.add_argument("--cpu", action="store_true", help="tiny run on the CPU: checks the script, not a figure")
    args = ap.parse_args()
    if args.cpu:
        dev, args.steps, args.warmup, args.batch = torch.device("cpu"), 3, 1, 16
        name = "CPU (smoke test)"
    elif torch.cuda.is_available():
        dev = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(dev)
    else:
        sys.exit("no CUDA device: run on a GPU machine, or pass --cpu for a smoke test")
    params = sum(p.numel() for p in build_model(**jkx20_kwargs()).parameters())
    print(f"{name}, torch {torch.__version__}, jkx20 1x64x60 ({params:,} parameters), batch {args.batch}, {args.steps} steps"
          f"{', compiled' if args.compile else ''}")
    results = {}
    for label, recipe in (("recipe (bf16, channels_last)", True), ("fp32 NCHW", False)):
        results[label] = run(dev, recipe=recipe, steps=args.steps, warmup=args.warmup, batch=args.batch,
                             compile=args.compile)
        ips, peak = results[label]
        print(f"{label:30} {ips:12,.0f} images/s   peak GPU memory {peak:.2f} GiB")
    (r, _), (f, _) = results.values()
    print(f"recipe / fp32: {r / f:.2f}x")


if __name__ == "__main__":
    main()
