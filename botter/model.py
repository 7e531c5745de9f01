"""A CNN classifier built from the model config: feature layers from specs, then a Linear head.

The feature layers are shapes' layer specs (dicts named like torch.nn classes and their keyword
arguments); the head is Flatten and, for each hidden size, Dropout -> Linear -> ReLU, then
Dropout -> Linear(num_classes). The first Linear's in_features comes from `botter.shapes`, so a
model config never states it, and a stack too deep for the image fails before any tensor exists.
"""

from collections.abc import Sequence

import torch
from torch import nn

from botter import shapes
from botter.errors import BotterError

HEAD_KEYS = ("hidden", "dropout", "num_classes")


def layer_specs(layers, head) -> list[dict]:
    """The whole stack as layer specs: `layers` then the head's Flatten, Dropout, Linear and ReLU.

    `head` is {"hidden": [sizes of hidden Linear layers], "dropout": p before each Linear (0 for none),
    "num_classes": outputs of the last Linear}.
    """
    if not isinstance(head, dict) or set(head) != set(HEAD_KEYS):
        raise BotterError(f"model head must have exactly the keys {', '.join(HEAD_KEYS)}, got {head!r}")
    hidden, dropout = head["hidden"], head["dropout"]
    if not isinstance(hidden, Sequence) or isinstance(hidden, str):
        raise BotterError(f"model head.hidden must be a list of Linear sizes ([] for none), got {hidden!r}")
    specs = [*layers, {"type": "Flatten"}]
    for size in [*hidden, head["num_classes"]]:
        if dropout:  # p = 0 would be a no-op layer in the table and the state dict
            specs.append({"type": "Dropout", "p": dropout})
        specs.append({"type": "Linear", "out_features": size})
        specs.append({"type": "ReLU"})
    return specs[:-1]  # the logits need no activation


class CNN(nn.Module):
    """`features` (the config's layers) then `head`; forward takes float images, returns logits."""

    def __init__(self, features: nn.Sequential, head: nn.Sequential, input_shape: tuple[int, int, int]):
        super().__init__()
        self.features, self.head = features, head
        self.input_shape = input_shape  # (C, H, W) the Linear sizes were computed for

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, C, H, W) -> (N, C', H', W')
        return self.head(x)  # (N, num_classes) logits


def build_model(in_channels: int, layers, head, input_hw) -> CNN:
    """Build the CNN for images of `in_channels` x input_hw (height, width) pixels.

    Takes the model config as keyword arguments: `build_model(**model_cfg, input_hw=(H, W))` with
    plain containers (OmegaConf.to_container(cfg.model, resolve=True)). Raises BotterError for a bad
    spec or a stack the image is too small for, naming the layer.
    """
    if isinstance(input_hw, str) or not isinstance(input_hw, Sequence) or len(input_hw) != 2:
        raise BotterError(f"input_hw must be (height, width) in pixels, got {input_hw!r}")
    input_shape = (in_channels, *input_hw)
    rows = shapes.trace(layer_specs(layers, head), input_shape)
    modules = [getattr(nn, r.type)(**r.kwargs) for r in rows]
    return CNN(nn.Sequential(*modules[: len(layers)]), nn.Sequential(*modules[len(layers) :]), input_shape)
