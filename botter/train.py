"""Training and evaluation: fit a CNN on the train split, stop early on val loss, score the test split.

`train()` takes the three splits (botter.dataset.Windows) and writes the run folder:
config.yaml, last.pt / best.pt (resumable checkpoints), model.pt (best weights + what is needed to
use them), metrics.csv (per epoch), curves.png, predictions.parquet (test split) and metrics.json
(test metrics beside two baselines). `load_model()` and `predict()` reuse a run's model elsewhere.

Under torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel (nccl on CUDA, gloo on
CPU); rank 0 writes the files. `python -m botter.train ...` runs the botter-train Hydra app.
"""

import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from torch import nn
from tqdm import tqdm

from botter.atomic import atomic_path
from botter.dataset import CLASS_NAMES, Windows
from botter.errors import BotterError
from botter.evaluate import balanced_accuracy, baselines, log_loss, metrics
from botter.model import build_model

SCHEDULES = ("onecycle", "cosine", "constant")


def pick_device(device: str = "auto") -> torch.device:
    """"auto" -> cuda (this process's LOCAL_RANK under torchrun), then mps, then cpu; else as given
    ("cuda" without an index also means this process's GPU)."""
    if device != "auto":
        try:
            dev = torch.device(device)
        except RuntimeError as e:
            raise BotterError(f"trainer.device={device!r} is not a torch device (auto, cpu, cuda, cuda:1, mps)") from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BotterError(f"trainer.device={device!r} but CUDA is not available: use trainer.device=auto")
        if dev.type == "cuda" and dev.index is None:  # "cuda": this process's own GPU under torchrun
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def setup_distributed(dev: torch.device) -> tuple[int, int]:
    """(rank, world_size); joins the process group when launched by torchrun with WORLD_SIZE > 1:
    nccl when training on CUDA (`dev` from pick_device), gloo otherwise (also on a GPU machine
    told trainer.device=cpu)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # the processes share the cores
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def train(
    splits: dict[str, Windows],
    *,
    model_kwargs: dict,
    info: dict,
    out_dir,
    config: dict | None = None,
    max_epochs: int = 10,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    schedule: str = "onecycle",
    class_weights: bool = True,
    patience: int = 3,
    grad_clip: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    compile: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train, test and write the run folder `out_dir`; returns the metrics.json content.

    splits: {"train", "val", "test": Windows}. model_kwargs: build_model's keyword arguments
    (in_channels, layers, head, input_hw). info: stored in model.pt beside them (render, window,
    horizon, classes, flat_threshold, timeframe). config: the resolved config, saved as config.yaml.
    lr: peak learning rate of AdamW; schedule: onecycle, cosine (per step) or constant.
    patience: epochs without a lower val loss before stopping. grad_clip: max gradient norm (0: off).
    resume: continue from out_dir/last.pt when it exists (same config).
    """
    if schedule not in SCHEDULES:
        raise BotterError(f"trainer.schedule={schedule!r} is not one of: {', '.join(SCHEDULES)}")
    if batch_size < 1 or max_epochs < 1:
        raise BotterError(f"trainer.batch_size={batch_size} and trainer.max_epochs={max_epochs} must be >= 1")
    out = Path(out_dir)
    dev = pick_device(device)
    rank, world = setup_distributed(dev)
    main = rank == 0
    classes = info["classes"]
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if config is not None:
            (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))

    torch.manual_seed(seed)
    net = build_model(**model_kwargs).to(dev)
    cuda = dev.type == "cuda"
    net = net.to(memory_format=torch.channels_last)  # faster convolutions on CUDA and on CPU (oneDNN)
    model = net
    if world > 1:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if cuda else None)
    if compile:
        model = torch.compile(model)
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if cuda and torch.cuda.is_bf16_supported()
        else nullcontext()
    )

    if main:
        precision = "bf16 autocast" if isinstance(amp, torch.autocast) else "fp32"
        print(f"training {sum(p.numel() for p in net.parameters()):,} parameters on {dev} ({precision}, "
              f"channels_last), {world} process(es), batch {batch_size}")
    train_x, train_y = _to_device(splits["train"], dev)
    counts = torch.bincount(train_y.cpu(), minlength=classes).double()
    weight = (counts.sum() / (classes * counts.clamp(min=1))).float() if class_weights else None
    criterion = nn.CrossEntropyLoss(weight=None if weight is None else weight.to(dev))

    per_rank = len(train_y) // world
    steps = max(1, math.ceil(per_rank / batch_size))
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    if schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max_epochs * steps)
    elif schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs * steps)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    state = {"epoch": 0, "best_val_loss": math.inf, "bad_epochs": 0, "history": []}
    if resume and (out / "last.pt").exists():
        ckpt = torch.load(out / "last.pt", map_location=dev, weights_only=False)
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"])
        state = {k: ckpt[k] for k in state}
        if main:
            print(f"resuming {out / 'last.pt'} after epoch {state['epoch']}")
    elif resume and main:
        print(f"trainer.resume: no {out / 'last.pt'} yet, starting from epoch 1")
    writer = _tensorboard(out) if main else None

    while state["epoch"] < max_epochs and state["bad_epochs"] < patience:
        epoch = state["epoch"]
        started = time.perf_counter()
        model.train()
        # The same permutation on every rank (seeded by epoch), each rank takes its own stride.
        order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        order = order[: per_rank * world][rank::world].to(dev)
        # Sums stay on the device: reading them every step would make the GPU wait for the CPU.
        total, correct = torch.zeros((), device=dev), torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{max_epochs}", disable=not (main and progress), leave=False)
        for i in bar:
            idx = order[i * batch_size : (i + 1) * batch_size]
            x, y = _batch(train_x, idx, dev), train_y[idx]  # (B, C, H, W) float, (B,)
            with amp:
                logits = model(x)  # (B, classes)
                loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            total += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if i % 10 == 9:
                bar.set_postfix(loss=f"{total.item() / seen:.4f}")
        bar.close()
        total, correct = total.item(), correct.item()
        train_seconds = time.perf_counter() - started

        # Every rank scores the whole val split with identical weights, so all stop together.
        val_probs = predict(net, splits["val"].images, device=dev)
        val_y = splits["val"].labels
        val_loss = log_loss(val_y, val_probs, None if weight is None else weight.numpy())
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": total / seen,
            "train_accuracy": correct / seen,
            "val_loss": val_loss,
            "val_accuracy": float((val_probs.argmax(1) == val_y).mean()),
            "val_balanced_accuracy": balanced_accuracy(val_y, val_probs.argmax(1), classes),
            "train_seconds": train_seconds,  # the steps alone (scripts/bench_train.py compares them)
            "seconds": time.perf_counter() - started,
        }
        improved = val_loss < state["best_val_loss"]
        state.update(
            epoch=epoch + 1,
            best_val_loss=min(val_loss, state["best_val_loss"]),
            bad_epochs=0 if improved else state["bad_epochs"] + 1,
            history=[*state["history"], row],
        )
        if main:
            if improved:
                _save({"model": net.state_dict(), "epoch": epoch + 1, "val_loss": val_loss}, out / "best.pt")
            _save(
                {
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    **state,
                },
                out / "last.pt",
            )
            with atomic_path(out / "metrics.csv") as tmp:
                pd.DataFrame(state["history"]).to_csv(tmp, index=False)
            if writer is not None:
                for k, v in row.items():
                    writer.add_scalar(k, v, epoch + 1)
            print(
                f"epoch {epoch + 1}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.3f} | "
                f"val loss {val_loss:.4f} acc {row['val_accuracy']:.3f} | {row['seconds']:.1f}s"
            )
    if writer is not None:
        writer.close()
    if not main:
        return {}

    best = torch.load(out / "best.pt", map_location=dev, weights_only=False)
    net.load_state_dict(best["model"])
    _save({"state_dict": net.state_dict(), "model_kwargs": model_kwargs, **info}, out / "model.pt")
    test = splits["test"]
    probs = predict(net, test.images, device=dev)
    with atomic_path(out / "predictions.parquet") as tmp:
        predictions_frame(test, probs, classes).to_parquet(tmp, index=False)
    result = {
        "test": metrics(test.labels, probs),
        "baselines": baselines(splits["train"], test, classes=classes, flat_threshold=info.get("flat_threshold", 0.0)),
        "best_epoch": best["epoch"],
        "epochs": state["epoch"],
    }
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    plot_curves(pd.DataFrame(state["history"]), out / "curves.png")
    return result


def _to_device(windows: Windows, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The uint8 images where batches are cut from: on the GPU when they fit, else pinned host memory."""
    x = torch.from_numpy(np.ascontiguousarray(windows.images))  # (N, C, H, W) uint8
    y = torch.from_numpy(windows.labels).to(dev)  # (N,)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        x = x.to(dev) if x.nbytes < free // 2 else x.pin_memory()
    return x, y


def _batch(images: torch.Tensor, idx: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """Float batch in [0, 1] on `dev`, channels_last, from uint8 images anywhere."""
    idx = idx.to(images.device)
    if images.is_pinned():  # gather into pinned memory, so the copy to the GPU runs asynchronously
        x = torch.empty((len(idx), *images.shape[1:]), dtype=images.dtype, pin_memory=True)
        torch.index_select(images, 0, idx, out=x)
    else:
        x = images[idx]  # (B, C, H, W) uint8
    if x.device != dev:
        x = x.to(dev, non_blocking=True)
    return x.float().div_(255).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, device=None, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities (N, classes) float64 for uint8 images (N, C, H, W), in eval mode.

    device: where to run (default: where the model's parameters are). Columns follow
    botter.dataset.CLASS_NAMES (down, up) or (down, flat, up).
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(images))  # (N, C, H, W) uint8
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if dev.type == "cuda" and torch.cuda.is_bf16_supported()
        else nullcontext()
    )
    out = []
    for s in range(0, len(x), batch_size):
        with amp:
            logits = model(_batch(x, torch.arange(s, min(s + batch_size, len(x))), dev))  # (B, classes)
        out.append(torch.softmax(logits.float(), 1).cpu())
    model.train(was_training)
    if not out:
        return np.zeros((0, model.head[-1].out_features))
    return torch.cat(out).double().numpy()


def load_model(run_dir, device=None) -> tuple[nn.Module, dict]:
    """(model in eval mode, info) from `run_dir`/model.pt; info holds model_kwargs, render, window,
    horizon, classes, flat_threshold, timeframe."""
    path = Path(run_dir) / "model.pt"
    if not path.exists():
        raise BotterError(f"{path} does not exist: pass the folder of a finished botter-train run")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model = build_model(**saved["model_kwargs"])
    model.load_state_dict(saved.pop("state_dict"))
    if device is not None:
        model = model.to(device)
    return model.eval(), saved


def _save(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def predictions_frame(windows: Windows, probs: np.ndarray, classes: int) -> pd.DataFrame:
    """The predictions table of a run folder: time (UTC decision time), symbol, p_<class>..., label."""
    return pd.DataFrame(
        {
            "time": pd.DatetimeIndex(windows.times).tz_localize("UTC"),
            "symbol": windows.symbols.astype(str),
            **{f"p_{name}": probs[:, i] for i, name in enumerate(CLASS_NAMES[classes])},
            "label": windows.labels,
        }
    )


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(out / "tensorboard")


def plot_curves(history: pd.DataFrame, path) -> None:
    """Loss and accuracy per epoch, train and val, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    for split in ("train", "val"):
        a.plot(history["epoch"], history[f"{split}_loss"], marker="o", label=split)
        b.plot(history["epoch"], history[f"{split}_accuracy"], marker="o", label=split)
    a.set(xlabel="epoch", ylabel="loss (class-weighted cross-entropy)", title="loss")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    from botter.cli.train import main

    main()
