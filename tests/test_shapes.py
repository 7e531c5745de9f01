"""botter.shapes: hand-computed cases, clear errors, and torch itself as the oracle for random stacks."""

import math
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from botter import shapes
from botter.errors import BotterError

SEED = [
    {"type": "Conv2d", "out_channels": 16, "kernel_size": 5},
    {"type": "ReLU"},
    {"type": "MaxPool2d", "kernel_size": 2, "stride": 2},
    {"type": "Conv2d", "out_channels": 32, "kernel_size": 5},
    {"type": "ReLU"},
    {"type": "MaxPool2d", "kernel_size": 2, "stride": 2},
]


def torch_trace(layers, input_shape):
    """What torch does with the stack: [(output shape, parameter count)] per layer, or None if it refuses.

    Independent of botter.shapes: in_channels-like options left out are read off the real tensor.
    """
    x, out = torch.zeros(1, *input_shape), []
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # 'same' with an even kernel warns about a padded copy
            for spec in layers:
                kwargs = {k: v for k, v in spec.items() if k != "type"}
                filled = {"Conv2d": "in_channels", "BatchNorm2d": "num_features", "Linear": "in_features"}
                if spec["type"] in filled:
                    kwargs.setdefault(
                        filled[spec["type"]], x.shape[-1] if spec["type"] == "Linear" else x.shape[1]
                    )
                layer = getattr(nn, spec["type"])(**kwargs).eval()
                x = layer(x)
                out.append((tuple(x.shape[1:]), sum(p.numel() for p in layer.parameters())))
    except (RuntimeError, ValueError):
        return None
    return out


def botter_trace(layers, input_shape):
    try:
        return [(r.out_shape, r.params) for r in shapes.trace(layers, input_shape)]
    except BotterError:
        return None


def test_seed_example_as_computed_on_paper():
    rows = shapes.trace(SEED, (3, 240, 320))
    windows = [r for r in rows if r.dims]
    assert [windows[0].dims[0].size_in] + [r.dims[0].size_out for r in windows] == [240, 236, 118, 114, 57]
    assert [windows[0].dims[1].size_in] + [r.dims[1].size_out for r in windows] == [320, 316, 158, 154, 77]
    assert rows[-1].out_shape == (32, 57, 77)
    assert shapes.linear_in_features(SEED, (3, 240, 320)) == 32 * 57 * 77 == 140448
    # 16 * 3 * 5 * 5 + 16 and 32 * 16 * 5 * 5 + 32
    assert [r.params for r in rows] == [1216, 0, 0, 12832, 0, 0]
    assert rows[0].kwargs == {"in_channels": 3, "out_channels": 16, "kernel_size": 5}


def test_ceil_mode_last_window_must_start_inside_input_or_left_padding():
    pool = {"type": "MaxPool2d", "kernel_size": 2, "stride": 3, "padding": 1, "ceil_mode": True}
    # ceil((5 + 2 - 2) / 3) + 1 = 3, but the third window would start at 6 >= 5 + 1: torch drops it.
    (row,) = shapes.trace([pool], (1, 5, 5))
    assert row.out_shape == (1, 2, 2)
    assert torch_trace([pool], (1, 5, 5))[0][0] == (1, 2, 2)
    # Without padding the partial last window starts at 4 < 5 and stays: ceil((5 - 2) / 2) + 1 = 3.
    assert shapes.trace([{**pool, "stride": 2, "padding": 0}], (1, 5, 5))[0].out_shape == (1, 3, 3)


def test_same_padding_puts_the_odd_pixel_after():
    (row,) = shapes.trace(
        [{"type": "Conv2d", "out_channels": 2, "kernel_size": [4, 3], "padding": "same"}], (1, 7, 9)
    )
    assert row.out_shape == (2, 7, 9)
    assert [d.padding for d in row.dims] == [(1, 2), (1, 1)]


def test_pool_stride_defaults_to_kernel_and_adaptive_keeps_null_dims():
    rows = shapes.trace(
        [
            {"type": "AvgPool2d", "kernel_size": [2, 3]},
            {"type": "AdaptiveMaxPool2d", "output_size": [None, 2]},
        ],
        (4, 9, 9),
    )
    assert rows[0].out_shape == (4, 4, 3) and rows[0].dims[1].stride == 3
    assert rows[1].out_shape == (4, 4, 2) and rows[1].dims[0].kernel_size is None


def test_flatten_then_linear_and_parameter_counts():
    layers = [
        {"type": "Conv2d", "out_channels": 6, "kernel_size": 3, "groups": 2, "bias": False},
        {"type": "BatchNorm2d"},
        {"type": "Flatten"},
        {"type": "Linear", "out_features": 5},
    ]
    rows = shapes.trace(layers, (4, 5, 6))
    assert [r.out_shape for r in rows] == [(6, 3, 4), (6, 3, 4), (72,), (5,)]
    assert [r.params for r in rows] == [6 * 2 * 9, 12, 0, 72 * 5 + 5]
    assert shapes.linear_in_features(layers, (4, 5, 6)) == 5


@pytest.mark.parametrize(
    "layers, message",
    [
        ([{"type": "Conv3d", "out_channels": 1, "kernel_size": 1}], "layer 0: unknown type 'Conv3d'"),
        (
            [{"type": "ReLU"}, {"type": "Conv2d", "out_channels": 1, "kernal_size": 3}],
            "layer 1 (Conv2d): unknown option 'kernal_size'",
        ),
        ([{"type": "Conv2d", "out_channels": 1}], "layer 0 (Conv2d): kernel_size is missing"),
        (
            [{"type": "Conv2d", "in_channels": 3, "out_channels": 1, "kernel_size": 1}],
            "layer 0 (Conv2d): in_channels is 3 but the layer before gives 2 channels",
        ),
        ([{"type": "BatchNorm2d", "num_features": 4}], "layer 0 (BatchNorm2d): num_features is 4 but"),
        (SEED + SEED[3:5], "layer 6 (Conv2d): height 2 -> -2 < 1"),
        (
            [{"type": "Conv2d", "out_channels": 1, "kernel_size": 3, "stride": 2, "padding": "same"}],
            "layer 0 (Conv2d): padding 'same' needs stride 1",
        ),
        (
            [{"type": "Conv2d", "out_channels": 3, "kernel_size": 1, "groups": 2}],
            "groups 2 must divide in_channels 2",
        ),
        (
            [{"type": "MaxPool2d", "kernel_size": [4, 2], "padding": [1, 2]}],
            "layer 0 (MaxPool2d): width padding 2 is more than half the kernel_size 2",
        ),
        (
            [{"type": "Conv2d", "out_channels": 1, "kernel_size": [1, 2.5]}],
            "kernel_size must be an integer >= 1",
        ),
        (
            [{"type": "Linear", "out_features": 2}],
            "layer 0 (Linear): needs a flat input but gets 2 x 20 x 30",
        ),
        (
            [{"type": "Flatten"}, {"type": "MaxPool2d", "kernel_size": 2}],
            "layer 1 (MaxPool2d): needs a (C, H, W) input but layer 0 flattened it",
        ),
        ([{"type": "Dropout", "p": 1.5}], "layer 0 (Dropout): p must be a probability"),
        ([{"type": "ReLU", "inplace": "yes"}], "layer 0 (ReLU): inplace must be true or false"),
    ],
)
def test_bad_stacks_raise_one_clear_error(layers, message):
    with pytest.raises(BotterError) as e:
        shapes.trace(layers, (2, 20, 30))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_too_deep_message_names_dimension_sizes_and_input():
    with pytest.raises(
        BotterError, match=r"layer 3 \(Conv2d\): height 2 -> -2 < 1 .* 1 x 8 x 60 \(C x H x W\)"
    ):
        shapes.trace(SEED, (1, 8, 60))


def test_format_table_ends_with_the_linear_line():
    text = shapes.format_table(
        shapes.trace(SEED + [{"type": "Flatten"}, {"type": "Linear", "out_features": 2}], (3, 240, 320))
    )
    assert "height: 240 -> 236 -> 118 -> 114 -> 57" in text
    assert "width: 320 -> 316 -> 158 -> 154 -> 77" in text
    assert text.endswith("Linear in_features = 32 x 57 x 77 = 140448")


# ---- torch as the oracle, for random stacks -------------------------------------------------------


def pair(lo, hi):
    return st.one_of(st.integers(lo, hi), st.lists(st.integers(lo, hi), min_size=2, max_size=2))


def layer(type_, required=None, optional=None):
    return st.fixed_dictionaries({"type": st.just(type_), **(required or {})}, optional=optional or {})


CONV_OPTIONS = {
    "stride": pair(1, 3),
    "padding": st.one_of(pair(0, 3), st.sampled_from(["same", "valid"])),
    "dilation": pair(1, 3),
    "groups": st.integers(1, 3),
    "bias": st.booleans(),
    "padding_mode": st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
}
CONV = {"out_channels": st.integers(1, 6), "kernel_size": pair(1, 4)}
POOL = {"stride": st.one_of(st.none(), pair(1, 3)), "padding": pair(0, 2), "ceil_mode": st.booleans()}
OUTPUT_SIZE = st.one_of(
    st.integers(1, 4), st.lists(st.one_of(st.none(), st.integers(1, 4)), min_size=2, max_size=2)
)
PROBABILITY = st.sampled_from([0.0, 0.25, 1.0, 1.5])
ELEMENTWISE = st.one_of(
    layer("ReLU"),
    layer("LeakyReLU", optional={"negative_slope": st.floats(-1, 1)}),
    layer("GELU", optional={"approximate": st.sampled_from(["none", "tanh"])}),
    layer("SiLU"),
    layer("ELU"),
    layer("Tanh"),
    layer("Sigmoid"),
    layer("Dropout", optional={"p": PROBABILITY}),
)
SPATIAL = st.one_of(
    layer("Conv2d", CONV, CONV_OPTIONS),
    layer("Conv2d", CONV, CONV_OPTIONS),
    layer("Conv2d", {**CONV, "in_channels": st.integers(1, 4)}, CONV_OPTIONS),
    layer("MaxPool2d", {"kernel_size": pair(1, 4)}, {**POOL, "dilation": pair(1, 2)}),
    layer(
        "AvgPool2d",
        {"kernel_size": pair(1, 4)},
        {
            **POOL,
            "count_include_pad": st.booleans(),
            "divisor_override": st.one_of(st.none(), st.integers(1, 3)),
        },
    ),
    layer("AdaptiveAvgPool2d", {"output_size": OUTPUT_SIZE}),
    layer("AdaptiveMaxPool2d", {"output_size": OUTPUT_SIZE}),
    layer("BatchNorm2d", optional={"affine": st.booleans(), "num_features": st.integers(1, 6)}),
    layer("Dropout2d", optional={"p": PROBABILITY}),
    ELEMENTWISE,
)
FLAT = st.one_of(layer("Linear", {"out_features": st.integers(1, 5)}, {"bias": st.booleans()}), ELEMENTWISE)
STACKS = st.tuples(
    st.lists(SPATIAL, max_size=5),
    st.one_of(st.just([]), st.lists(FLAT, max_size=3).map(lambda tail: [{"type": "Flatten"}, *tail])),
).map(lambda parts: parts[0] + parts[1])
INPUTS = st.tuples(st.integers(1, 4), st.integers(1, 14), st.integers(1, 14))


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=STACKS, input_shape=INPUTS)
def test_trace_agrees_with_torch_on_random_stacks(layers, input_shape):
    """Same output shape and parameters per layer where torch runs the stack; rejected where torch refuses."""
    expected = torch_trace(layers, input_shape)
    assert botter_trace(layers, input_shape) == expected
    if expected is not None:
        assert shapes.linear_in_features(layers, input_shape) == math.prod(
            expected[-1][0] if expected else input_shape
        )


WINDOWS = st.lists(
    st.one_of(
        layer("Conv2d", CONV, {k: CONV_OPTIONS[k] for k in ("stride", "padding", "dilation")}),
        layer("MaxPool2d", {"kernel_size": pair(1, 5)}, {**POOL, "dilation": pair(1, 3)}),
        layer("AvgPool2d", {"kernel_size": pair(1, 5)}, POOL),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=500, deadline=None)
@given(layers=WINDOWS, input_shape=st.tuples(st.integers(1, 2), st.integers(1, 24), st.integers(1, 24)))
def test_window_arithmetic_agrees_with_torch_on_deeper_images(layers, input_shape):
    """Stacks of sliding windows only, on larger images: the floor/ceil/padding rules, where most stacks run."""
    assert botter_trace(layers, input_shape) == torch_trace(layers, input_shape)
