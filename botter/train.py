"""Training: fit a CNN on the train windows, stop early on the validation loss.

`fit()` draws each batch's charts inside the training step, from the candles, on the training
device (botter.dataset.Windows.images): the images never exist outside a batch. It writes
last.pt / best.pt (resumable checkpoints, through botter.runs), metrics.csv and curves.png into
its folder and returns the model with the best weights. Under torchrun (WORLD_SIZE > 1) it trains
with DistributedDataParallel (nccl on CUDA, gloo on CPU): each rank draws only its own batches,
rank 0 scores the validation split and its early-stopping decision is broadcast to every rank.
`python -m botter.train ...` runs the botter-train Hydra app.
"""

import hashlib
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn

from botter import runs, shapes
from botter.atomic import atomic_path
from botter.dataset import COLUMNS, Windows
from botter.errors import BotterError
from botter.evaluate import balanced_accuracy, log_loss
from botter.inference import as_input, probabilities
from botter.model import build_model, layer_specs
from botter.progress import bar as progress_bar

SCHEDULES = ("onecycle", "cosine", "constant")
# Settings that shape a checkpoint: trainer keys outside it may change on resume.
RESUME_FREE = ("max_epochs", "patience", "progress", "device", "resume", "compile")
# Auto batch on CUDA: the largest power of two whose activations take at most this share of free memory.
GPU_BATCH_MEMORY = 0.25
GPU_BATCH_MAX = 4096
CPU_BATCH = 256
# torch.compile costs tens of seconds; on CUDA it pays from about this many training steps.
COMPILE_AFTER_STEPS = 2000


def check_settings(*, schedule, max_epochs, patience, batch_size, lr, weight_decay, grad_clip, **_) -> None:
    """BotterError naming the trainer.<key> for a setting `fit` cannot train with (other keys of the
    trainer config are ignored): `fit` checks, and the commands before they write a run folder."""
    if schedule not in SCHEDULES:
        raise BotterError(f"trainer.schedule={schedule!r} is not one of: {', '.join(SCHEDULES)}")
    # batch_size null: chosen for the device; 0 is no batch size
    for name, value in (("max_epochs", max_epochs), ("patience", patience),
                        ("batch_size", 1 if batch_size is None else batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BotterError(f"trainer.{name}={value} must be a whole number >= 1")
    for name, value in (("lr", lr), ("weight_decay", weight_decay), ("grad_clip", grad_clip)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise BotterError(f"trainer.{name}={value} must be a number >= 0")


def pick_device(device: str = "auto", *, key: str = "trainer.device") -> torch.device:
    """"auto" -> cuda (this process's LOCAL_RANK under torchrun), then mps, then cpu; else as given
    ("cuda" without an index also means this process's GPU). `key`: the setting errors name."""
    if device != "auto":
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise BotterError(f"{key}={device!r} is not a torch device (auto, cpu, cuda, cuda:1, mps)") from e
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BotterError(f"{key}={device!r} but CUDA is not available: use "
                              f"{'trainer.device=auto' if key == 'trainer.device' else key + '=null'}")
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


def fingerprint(config: dict, candles: dict[str, pd.DataFrame]) -> dict:
    """What shaped a checkpoint: the data, render, model and dataset config, the trainer settings
    except those free to change on resume (RESUME_FREE), and the candles themselves (a hash per
    symbol: another store, or one edited or backfilled since, is other data under the same config)."""
    trainer = {k: v for k, v in config["trainer"].items() if k not in RESUME_FREE}
    digests = {}
    for symbol, df in candles.items():
        h = hashlib.sha256(df.index.as_unit("ms").asi8.tobytes())
        h.update(np.ascontiguousarray(df[COLUMNS].to_numpy(np.float64)).tobytes())
        digests[symbol] = f"{len(df)} candles {df.index[0]} .. {df.index[-1]}, sha256 {h.hexdigest()[:16]}"
    return {k: config[k] for k in ("data", "render", "model", "dataset")} | {"trainer": trainer, "candles": digests}


def check_resume(out_dir, expected: dict) -> dict | None:
    """The checkpoint last.pt in `out_dir` if it was made with the settings `expected`
    (`fingerprint`); None where there is none. Reads only: a refusal leaves every file as it was."""
    path = Path(out_dir) / "last.pt"
    if not path.exists():
        return None
    ckpt = runs.load_checkpoint(path)
    differ = _differences(ckpt.get("fingerprint", {}), expected)
    if differ:
        raise BotterError(f"trainer.resume: {path} was trained with other settings ({'; '.join(differ[:6])}"
                          f"{'; ...' if len(differ) > 6 else ''}): resume with the same overrides, or start "
                          "a new run folder")
    return ckpt


def _differences(a, b, key="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in _differences(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))]
    return [] if a == b else [f"{key}: checkpoint {a!r}, now {b!r}"]


def auto_batch(batch_size, model_kwargs: dict, dev: torch.device) -> int:
    """`batch_size`, or where it is None: 256 on the CPU; on CUDA the largest power of two whose
    activations (from the shape module's layer sizes, bf16, saved for the backward pass) take at
    most a quarter of the free memory."""
    if batch_size is not None:
        return int(batch_size)
    if dev.type != "cuda":
        return CPU_BATCH
    c, (h, w) = model_kwargs["in_channels"], model_kwargs["input_hw"]
    rows = shapes.trace(layer_specs(model_kwargs["layers"], model_kwargs["head"]), (c, h, w))
    per_image = 2 * 3 * sum(math.prod(r.out_shape) for r in rows)  # bf16 bytes; forward, saved, gradient
    free, _ = torch.cuda.mem_get_info(dev)
    fit = max(1, int(GPU_BATCH_MEMORY * free / per_image))
    return min(GPU_BATCH_MAX, 2 ** int(math.log2(fit)))


@dataclass
class Fitted:
    """What `fit` returns on rank 0: the model with its best weights, the per-epoch history."""

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    batch_size: int
    precision: str
    compiled: bool


def fit(
    train: Windows,
    val: Windows,
    *,
    model_kwargs: dict,
    out_dir,
    fingerprint: dict | None = None,
    max_epochs: int = 10,
    batch_size: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    schedule: str = "onecycle",
    class_weights: bool = True,
    patience: int = 3,
    grad_clip: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    compile: bool | None = False,
    resume: bool = False,
    progress: bool = True,
) -> Fitted | None:
    """Train on `train` (labelled windows), stop early on the loss over `val`; checkpoints go to
    `out_dir`. Returns the best model on rank 0 (None on the other ranks).

    model_kwargs: build_model's keyword arguments (in_channels, layers, head, input_hw).
    fingerprint: stored in the checkpoints, so a resume can check it (see `check_resume`).
    batch_size: per process; None picks one for the device (`auto_batch`). lr: peak learning rate of
    AdamW; schedule: onecycle, cosine (per step, over max_epochs) or constant. patience: epochs
    without a lower val loss before stopping. grad_clip: max gradient norm (0: off). compile:
    torch.compile the model; None: on CUDA when the run has at least COMPILE_AFTER_STEPS steps.
    resume: continue from out_dir/last.pt when it exists; max_epochs may grow (the schedule is
    rebuilt over the new total and continues from the step reached).
    """
    check_settings(schedule=schedule, max_epochs=max_epochs, patience=patience, batch_size=batch_size, lr=lr,
                   weight_decay=weight_decay, grad_clip=grad_clip)
    if (train.labels < 0).any() or (val.labels < 0).any():
        raise BotterError("fit takes labelled windows only: pass windows.labelled()")
    if not len(train) or not len(val):
        raise BotterError(f"{len(train)} train and {len(val)} validation windows: both need some (a longer data range)")
    out = Path(out_dir)
    dev = pick_device(device)
    rank, world = setup_distributed(dev)
    main = rank == 0
    classes = model_kwargs["head"]["num_classes"]
    batch_size = auto_batch(batch_size, model_kwargs, dev)
    if main:
        out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(seed)
    net = build_model(**model_kwargs).to(dev)
    cuda = dev.type == "cuda"
    net = net.to(memory_format=torch.channels_last)  # faster convolutions on CUDA and on CPU (oneDNN)
    per_rank = len(train) // world
    steps = max(1, math.ceil(per_rank / batch_size))
    if compile is None:
        compile = cuda and steps * max_epochs >= COMPILE_AFTER_STEPS
    model = net
    if world > 1:
        model = nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if cuda else None)
    if compile:
        model = torch.compile(model)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and torch.cuda.is_bf16_supported() else nullcontext()
    precision = "bf16 autocast" if isinstance(amp, torch.autocast) else "fp32"
    if main:
        print(f"training {sum(p.numel() for p in net.parameters()):,} parameters on {dev} ({precision}, "
              f"channels_last{', compiled' if compile else ''}), {world} process(es), batch {batch_size}, "
              f"charts drawn in the step")
    train_y = torch.from_numpy(train.labels.astype(np.int64)).to(dev)  # (N,)
    counts = torch.bincount(train_y.cpu(), minlength=classes).double()
    weight = (counts.sum() / (classes * counts.clamp(min=1))).float() if class_weights else None
    criterion = nn.CrossEntropyLoss(weight=None if weight is None else weight.to(dev))

    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    state = {"epoch": 0, "best_val_loss": math.inf, "bad_epochs": 0, "history": []}
    ckpt = runs.load_checkpoint(out / "last.pt", map_location=dev) if resume and (out / "last.pt").exists() else None
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        state = {k: ckpt[k] for k in state}
        if main:
            print(f"resuming {out / 'last.pt'} after epoch {state['epoch']}")
    elif resume and main:
        print(f"trainer.resume: no {out / 'last.pt'} yet, starting from epoch 1")
    scheduler = _scheduler(optimizer, schedule, lr, max_epochs * steps, done=state["epoch"] * steps)
    writer = _tensorboard(out) if main else None

    while state["epoch"] < max_epochs and state["bad_epochs"] < patience:
        epoch = state["epoch"]
        started = time.perf_counter()
        model.train()
        # The same permutation on every rank (seeded by epoch), each rank takes its own stride.
        order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        order = order[: per_rank * world][rank::world]
        # Sums stay on the device: reading them every step would make the GPU wait for the CPU.
        total, correct = torch.zeros((), device=dev), torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        bar = progress_bar(range(steps), desc=f"epoch {epoch + 1}/{max_epochs}", show=main and progress, leave=False)
        for i in bar:
            idx = order[i * batch_size : (i + 1) * batch_size]
            x = as_input(train.images(idx.numpy(), dev))  # (B, C, H, W) drawn here, on dev
            y = train_y[idx.to(dev)]  # (B,)
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

        # Rank 0 scores the val split and tells the others, so that every rank takes the same
        # decision (ranks that decided alone could disagree and leave the others in an all-reduce).
        row = {}
        if main:
            val_probs = probabilities([net], val, device=dev)
            val_y = val.labels.astype(np.int64)
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
        val_loss = _from_rank0(row.get("val_loss", 0.0), dev) if world > 1 else row["val_loss"]
        improved = val_loss < state["best_val_loss"]
        state.update(
            epoch=epoch + 1,
            best_val_loss=min(val_loss, state["best_val_loss"]),
            bad_epochs=0 if improved else state["bad_epochs"] + 1,
            history=[*state["history"], row] if main else state["history"],
        )
        if main:
            if improved:
                runs.save_checkpoint(out / "best.pt", {"model": net.state_dict(), "epoch": epoch + 1,
                                                       "val_loss": val_loss})
            runs.save_checkpoint(out / "last.pt", {
                "model": net.state_dict(), "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                "fingerprint": fingerprint or {}, **state,
            })
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
        return None
    best = runs.load_checkpoint(out / "best.pt", map_location=dev)
    net.load_state_dict(best["model"])
    history = pd.DataFrame(state["history"])
    plot_curves(history, out / "curves.png")
    return Fitted(net.eval(), history, best["epoch"], batch_size, precision, bool(compile))


def _scheduler(optimizer, schedule: str, lr: float, total: int, *, done: int):
    """The learning-rate schedule over `total` steps, moved on by the `done` steps already taken (a
    resume; the rates follow the same closed forms, so a resume with the same total repeats them)."""
    if schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total)
    elif schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    for _ in range(min(done, total)):
        optimizer.step()  # no gradients: a no-op that keeps the scheduler from warning about the order
        scheduler.step()
    return scheduler


def _from_rank0(value: float, dev: torch.device) -> float:
    """`value` as rank 0 has it, on every rank."""
    t = torch.tensor([value], dtype=torch.float64, device=dev if dev.type == "cuda" else "cpu")
    dist.broadcast(t, 0)
    return float(t.item())


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
        # Half an epoch of margin: one epoch alone would otherwise get ticks like 0.95 .. 1.05.
        ax.set_xlim(history["epoch"].min() - 0.5, history["epoch"].max() + 0.5)
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
