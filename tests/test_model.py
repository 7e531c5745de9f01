"""botter.model: the shipped model configs build, run on their render size, and count as published."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from botter import shapes
from botter.config import compose
from botter.errors import BotterError
from botter.model import build_model, layer_specs


def model_kwargs(overrides):
    cfg = compose("shape", overrides)
    return {
        **OmegaConf.to_container(cfg.model, resolve=True),
        "input_hw": (cfg.render.height, cfg.render.width),
    }


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_jkx20_is_the_papers_20_day_model():
    kwargs = model_kwargs(["model=jkx20"])
    model = build_model(**kwargs).eval()
    assert kwargs["input_hw"] == (64, 60)
    assert model.head[-1].in_features == 46080  # 256 x 3 x 60, as in the paper's code
    assert n_params(model) == 708_866
    assert model(torch.rand(2, 1, 64, 60)).shape == (2, 2)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=small"],
        ["model=small", "data.classes=3"],
        ["model=seed", "render.height=48", "render.width=64"],
        ["model=jkx20", "render=mplfinance", "render.height=64", "render.width=60"],
    ],
)
def test_shipped_models_run_on_their_render_size_and_count_like_shapes(overrides):
    kwargs = model_kwargs(overrides)
    model = build_model(**kwargs).eval()
    c, (h, w) = kwargs["in_channels"], kwargs["input_hw"]
    rows = shapes.trace(layer_specs(kwargs["layers"], kwargs["head"]), (c, h, w))
    with torch.no_grad():
        logits = model(torch.rand(3, c, h, w))
    assert logits.shape == (3, kwargs["head"]["num_classes"])
    assert n_params(model) == sum(r.params for r in rows)
    assert model.input_shape == (c, h, w)


def test_head_dropout_before_each_linear_and_relu_between():
    specs = layer_specs([], {"hidden": [8, 4], "dropout": 0.25, "num_classes": 2})
    assert [s["type"] for s in specs] == [
        "Flatten",
        "Dropout",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    no_dropout = layer_specs([], {"hidden": [], "dropout": 0.0, "num_classes": 3})
    assert no_dropout == [{"type": "Flatten"}, {"type": "Linear", "out_features": 3}]


def test_stack_too_deep_fails_before_any_layer_is_built(monkeypatch):
    def built(*args, **kwargs):
        raise AssertionError("a layer was built")

    monkeypatch.setattr(nn.Conv2d, "__init__", built)
    kwargs = model_kwargs(["model=seed", "render.height=12"])
    with pytest.raises(BotterError, match=r"layer 3 \(Conv2d\): height 4 -> 0 < 1"):
        build_model(**kwargs)


@pytest.mark.parametrize(
    "head, message",
    [
        (
            {"hidden": [], "num_classes": 2},
            "model head must have exactly the keys hidden, dropout, num_classes",
        ),
        ({"hidden": 8, "dropout": 0.0, "num_classes": 2}, "head.hidden must be a list"),
        (
            {"hidden": [], "dropout": 0.0, "num_classes": 0},
            r"layer 1 \(Linear\): out_features must be an integer >= 1",
        ),
    ],
)
def test_bad_head_is_a_clear_error(head, message):
    with pytest.raises(BotterError, match=message):
        build_model(1, [], head, (4, 4))
