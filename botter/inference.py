"""A run's model or ensemble -> class probabilities: the one numeric path for evaluation, the
backtest of other candles and paper trading.

Probabilities are computed in float32 with no autocast and no TF32, the charts drawn by the
dataset's own renderer, in batches of at least two images: the CPU's convolutions take another
code path for a batch of one, whose sums differ in the last bit, while every batch of two or more
gives each image bit-identical probabilities. So the predictions a run writes and the decision a
paper trader makes on the same candles are the same numbers (tested), and a threshold is crossed
by both or by neither.
"""

from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
from torch import nn

from botter.dataset import CLASS_NAMES, Windows, build
from botter.errors import BotterError, one_line
from botter.model import build_model
from botter.progress import bar as progress_bar
from botter.render import lookback
from botter.runs import Run, damaged

PRECISION = "float32"


@contextmanager
def exact_float32():
    """Full float32 matmuls and convolutions on CUDA while the block runs (no TF32 shortcuts)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def as_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 charts (B, C, H, W) -> the float batch in [0, 1] the models read, channels_last."""
    return images.float().div_(255).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def probabilities(models: list[nn.Module], windows: Windows, *, device="cpu", batch_size: int | None = None,
                  progress: bool = False) -> np.ndarray:
    """Class probabilities (N, classes) float64 of every window: the mean of the members'
    softmax (a single model is an ensemble of one). Columns follow botter.dataset.CLASS_NAMES.
    batch_size: default 256 on the CPU (a batch's activations, not the windows, set the memory
    used: 1024 charts through `small` take 0.5 GB), 4096 on a GPU."""
    device = torch.device(device)
    batch_size = batch_size or (256 if device.type == "cpu" else 4096)
    was = [m.training for m in models]
    for m in models:
        m.eval()
    classes = models[0].head[-1].out_features
    out = np.zeros((len(windows), classes))
    bar = progress_bar(total=len(windows), desc="predict", unit="win", show=progress, leave=False, delay=1)
    with exact_float32():
        for s in range(0, len(windows), batch_size):
            idx = np.arange(s, min(s + batch_size, len(windows)))
            x = as_input(windows.images(np.r_[idx, idx] if len(idx) == 1 else idx, device))  # (B, C, H, W)
            p = sum(torch.softmax(m(x).float(), 1).double() for m in models) / len(models)  # (B, classes)
            out[idx] = p[: len(idx)].cpu().numpy()
            bar.update(len(idx))
    bar.close()
    for m, w in zip(models, was):
        m.train(w)
    return out


def predictions_frame(windows: Windows, probs: np.ndarray, classes: int) -> pd.DataFrame:
    """The predictions table of a run folder: time (UTC decision time), symbol, p_<class>...,
    label (<NA> where unknown)."""
    labels = pd.array(windows.labels.astype(np.int64), dtype="Int64")
    labels[windows.labels < 0] = pd.NA
    return pd.DataFrame({
        "time": pd.DatetimeIndex(windows.times).tz_localize("UTC"),
        "symbol": windows.symbols.astype(str),
        **{f"p_{name}": probs[:, i] for i, name in enumerate(CLASS_NAMES[classes])},
        "label": labels,
    })


class Predictor:
    """A trained model or ensemble with what it reads (info: render, window, horizon, classes,
    timeframe, hours, flat_threshold). `load(run)` builds one from a run folder."""

    def __init__(self, models: list[nn.Module], info: dict, device="cpu"):
        self.models = [m.to(device).eval() for m in models]
        self.info = info
        self.device = torch.device(device)
        self.classes = int(info["classes"])
        self.columns = [f"p_{c}" for c in CLASS_NAMES[self.classes]]
        self.lookback = lookback(int(info["window"]), info["render"].get("ma"))

    def probabilities(self, windows: Windows, *, progress: bool = False) -> np.ndarray:
        """(N, classes) float64 for `windows` (botter.dataset.build of candles with this info)."""
        return probabilities(self.models, windows, device=self.device, progress=progress)

    def frame(self, windows: Windows, *, progress: bool = False) -> pd.DataFrame:
        """The predictions table for `windows`."""
        return predictions_frame(windows, self.probabilities(windows, progress=progress), self.classes)

    def windows(self, candles: dict[str, pd.DataFrame], *, cache_dir=None, progress: bool = False,
                allow_empty: bool = False) -> Windows:
        """Every decidable window of `candles` ({symbol: Candles frame}), charted as the model was
        trained (botter.dataset.build with the run's window, renderer and market hours)."""
        i = self.info
        return build(candles, window=i["window"], horizon=i["horizon"], classes=self.classes,
                     timeframe=i["timeframe"], render=i["render"], hours=i.get("hours"),
                     flat_threshold=i.get("flat_threshold", 0.0), cache_dir=cache_dir, progress=progress,
                     allow_empty=allow_empty)

    def predict(self, candles: dict[str, pd.DataFrame], *, cache_dir=None, progress: bool = False) -> pd.DataFrame:
        """The predictions table for every decidable candle of `candles`: a run's predictions.parquet
        for other candles (another symbol or period)."""
        return self.frame(self.windows(candles, cache_dir=cache_dir, progress=progress), progress=progress)


def device_for(run: Run) -> str:
    """Where to predict for `run`: the device type its own predictions were computed on when this
    machine has one (the same numbers), else the CPU."""
    made_on = run.meta.get("predictions_precision", {}).get("device", "cpu")
    return "cuda" if made_on == "cuda" and torch.cuda.is_available() else "cpu"


def load(run: Run, device=None) -> Predictor:
    """The model (or ensemble) of a run folder, in eval mode on `device` (default `device_for(run)`)."""
    device = device or device_for(run)
    saved = run.model()
    models = []
    for state in saved["state_dicts"]:
        try:
            model = build_model(**saved["model_kwargs"])
            model.load_state_dict(state)
        except (RuntimeError, TypeError, ValueError, KeyError, BotterError) as e:  # torch's size mismatch, odd kwargs
            raise damaged(run.path / "model.pt", f"its weights do not fit the model it describes: {one_line(e)}") from e
        models.append(model.to(memory_format=torch.channels_last))
    return Predictor(models, saved["info"], device)
