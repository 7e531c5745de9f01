"""Layer-by-layer output sizes of a layer stack, with torch's own arithmetic, before any tensor exists.

A layer spec is a dict named exactly like the torch.nn class and its keyword arguments, so it can be
copied from the torch docs: `{"type": "Conv2d", "out_channels": 16, "kernel_size": 5}`.
`in_channels` (Conv2d), `num_features` (BatchNorm2d) and `in_features` (Linear) may be left out: they
are taken from the layer before, and must match it when given.

`trace` returns the data (one `Row` per layer); `format_table` draws it the way a person computes it
on paper. `trace` is the one source of every Linear input size in botter: for any stack it accepts,
its output shape equals what torch produces, and a stack torch would reject (or one that shrinks a
dimension below 1) raises `BotterError` naming the layer, the dimension and the sizes.

A spatial tensor is (C, H, W) and a flat one (F,), both without the batch dimension. `Flatten`
turns the first into the second; `Linear` needs a flat input.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from botter.errors import BotterError

_REQUIRED = object()

# Every option torch accepts for each supported layer, with torch's default.
OPTIONS: dict[str, dict] = {
    "Conv2d": {
        "in_channels": None,
        "out_channels": _REQUIRED,
        "kernel_size": _REQUIRED,
        "stride": 1,
        "padding": 0,
        "dilation": 1,
        "groups": 1,
        "bias": True,
        "padding_mode": "zeros",
    },
    "MaxPool2d": {
        "kernel_size": _REQUIRED,
        "stride": None,
        "padding": 0,
        "dilation": 1,
        "return_indices": False,
        "ceil_mode": False,
    },
    "AvgPool2d": {
        "kernel_size": _REQUIRED,
        "stride": None,
        "padding": 0,
        "ceil_mode": False,
        "count_include_pad": True,
        "divisor_override": None,
    },
    "AdaptiveAvgPool2d": {"output_size": _REQUIRED},
    "AdaptiveMaxPool2d": {"output_size": _REQUIRED, "return_indices": False},
    "BatchNorm2d": {
        "num_features": None,
        "eps": 1e-5,
        "momentum": 0.1,
        "affine": True,
        "track_running_stats": True,
    },
    "Dropout": {"p": 0.5, "inplace": False},
    "Dropout2d": {"p": 0.5, "inplace": False},
    "ReLU": {"inplace": False},
    "LeakyReLU": {"negative_slope": 0.01, "inplace": False},
    "GELU": {"approximate": "none"},
    "SiLU": {"inplace": False},
    "ELU": {"alpha": 1.0, "inplace": False},
    "Tanh": {},
    "Sigmoid": {},
    "Flatten": {"start_dim": 1, "end_dim": -1},
    "Linear": {"in_features": None, "out_features": _REQUIRED, "bias": True},
}
# Layers that slide a window over height and width: they get a column in the per-dimension tables.
WINDOW_TYPES = ("Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d")
_SPATIAL_TYPES = WINDOW_TYPES + ("BatchNorm2d", "Dropout2d")
_DIM_NAMES = ("height", "width")


@dataclass(frozen=True)
class Dim:
    """One spatial dimension through one window layer, in pixels, as computed on paper.

    OUT = (IN + padding[0] + padding[1] - dilation * (kernel_size - 1) - 1) // stride + 1 (rounded up
    with ceil_mode). Adaptive pools choose their windows per output pixel: their window fields are None.
    """

    size_in: int
    padding: tuple[int, int] | None  # (before, after): 'same' can pad unevenly
    dilation: int | None
    kernel_size: int | None
    stride: int | None
    size_out: int


@dataclass(frozen=True)
class Row:
    """One layer of a traced stack."""

    index: int
    type: str
    in_shape: tuple[int, ...]  # (C, H, W), or (F,) once flattened
    out_shape: tuple[int, ...]
    dims: tuple[Dim, ...]  # (height, width) for the WINDOW_TYPES, else ()
    params: int  # trainable parameters
    kwargs: dict  # complete torch keyword arguments: getattr(torch.nn, type)(**kwargs) builds the layer


class _Layer:
    """Checks one spec's options, with error messages that name the layer."""

    def __init__(self, index: int, spec, input_shape):
        if not isinstance(spec, Mapping) or "type" not in spec:
            raise BotterError(
                f"layer {index}: {spec!r} is not a layer spec: write a dict with 'type', "
                "e.g. {type: Conv2d, out_channels: 16, kernel_size: 5}"
            )
        self.index, self.type, self.input_shape = index, spec["type"], input_shape
        if self.type not in OPTIONS:
            raise BotterError(f"layer {index}: unknown type {self.type!r}; supported: {', '.join(OPTIONS)}")
        self.kwargs = {k: v for k, v in spec.items() if k != "type"}
        options = OPTIONS[self.type]
        for name in self.kwargs:
            if name not in options:
                self.fail(f"unknown option {name!r}; {self.type} takes: {', '.join(options) or 'no options'}")
        for name, default in options.items():
            if default is _REQUIRED and name not in self.kwargs:
                self.fail(f"{name} is missing")
            # Options that do not change shapes still get the type torch wants, so that building the layer never fails.
            value = self.kwargs.get(name, default)
            if isinstance(default, bool) and not isinstance(value, bool):
                self.fail(f"{name} must be true or false, got {value!r}")
            if (
                isinstance(default, float)
                and not (name == "momentum" and value is None)
                and not _is_number(value)
            ):
                self.fail(f"{name} must be a number, got {value!r}")

    def fail(self, message: str):
        raise BotterError(f"layer {self.index} ({self.type}): {message}")

    def get(self, name):
        """The option's value, torch's default if not given, None if the type has no such option."""
        return self.kwargs.get(name, OPTIONS[self.type].get(name))

    def integer(self, name, minimum: int = 1) -> int:
        value = self.get(name)
        if not _is_int(value) or value < minimum:
            self.fail(f"{name} must be an integer >= {minimum}, got {value!r}")
        return value

    def pair(self, name, minimum: int = 1) -> tuple[int, int]:
        """An int or an [height, width] pair of ints, like torch's `_pair`."""
        value = self.get(name)
        pair = (value, value) if _is_int(value) else tuple(value) if _is_seq(value) else ()
        if len(pair) != 2 or not all(_is_int(v) and v >= minimum for v in pair):
            self.fail(
                f"{name} must be an integer >= {minimum} or a [height, width] pair of them, got {value!r}"
            )
        return pair

    def choice(self, name, choices):
        value = self.get(name)
        if value not in choices:
            self.fail(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value

    def matches(self, name, actual: int, what: str) -> None:
        """`in_channels`-like options: filled in from the layer before, or checked against it."""
        given = self.kwargs.setdefault(name, actual)
        if given != actual:
            self.fail(
                f"{name} is {given!r} but the layer before gives {actual} {what}: "
                f"leave {name} out or set it to {actual}"
            )

    def too_small(self, dim: str, size_in: int, size_out: int, formula: str):
        shape = " x ".join(map(str, self.input_shape))
        self.fail(
            f"{dim} {size_in} -> {size_out} < 1 ({formula}): the stack is too deep for a {shape} "
            "(C x H x W) input; remove layers, use smaller kernel_size/stride or more padding, "
            "or a bigger image"
        )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_seq(value) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _window_out(size_in, pad, dilation, kernel, stride, ceil_mode=False) -> int:
    """torch's pooling_output_shape (also right for convolutions, which never use ceil_mode)."""
    span = size_in + pad[0] + pad[1] - dilation * (kernel - 1) - 1
    size_out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    # With ceil_mode the last window must start inside the input or the left padding.
    if ceil_mode and (size_out - 1) * stride >= size_in + pad[0]:
        size_out -= 1
    return size_out


def _windows(layer, hw, pads, dilation, kernel, stride, ceil_mode=False) -> tuple[Dim, Dim]:
    dims = []
    for name, n, p, d, k, s in zip(_DIM_NAMES, hw, pads, dilation, kernel, stride):
        out = _window_out(n, p, d, k, s, ceil_mode)
        if out < 1:
            rounding = "ceil" if ceil_mode else "floor"
            layer.too_small(
                name,
                n,
                out,
                f"{rounding}(({n} + padding {p[0]}+{p[1]} - dilation {d} x "
                f"(kernel_size {k} - 1) - 1) / stride {s}) + 1",
            )
        dims.append(Dim(n, p, d, k, s, out))
    return tuple(dims)


def _conv2d(layer: _Layer, c, hw):
    layer.matches("in_channels", c, "channels")
    out_channels, groups = layer.integer("out_channels"), layer.integer("groups")
    kernel, stride, dilation = layer.pair("kernel_size"), layer.pair("stride"), layer.pair("dilation")
    if c % groups or out_channels % groups:
        layer.fail(f"groups {groups} must divide in_channels {c} and out_channels {out_channels}")
    padding = layer.get("padding")
    if padding == "valid":
        pads = ((0, 0), (0, 0))
    elif padding == "same":
        if stride != (1, 1):
            layer.fail(f"padding 'same' needs stride 1 but stride is {list(stride)}: give padding as numbers")
        # torch pads the odd pixel of an even span after, not before.
        pads = tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for d, k in zip(dilation, kernel))
    else:
        pads = tuple((p, p) for p in layer.pair("padding", minimum=0))
    mode = layer.choice("padding_mode", ("zeros", "reflect", "replicate", "circular"))
    for name, n, p in zip(_DIM_NAMES, hw, pads):
        # F.pad's limits: reflect mirrors inside the input, circular wraps around it at most once.
        if (mode == "reflect" and max(p) >= n) or (mode == "circular" and max(p) > n):
            limit = "smaller than" if mode == "reflect" else "at most"
            layer.fail(
                f"padding_mode {mode!r} needs padding {limit} the {name} {n}, got padding {p[0]}+{p[1]}"
            )
    dims = _windows(layer, hw, pads, dilation, kernel, stride)
    params = out_channels * (c // groups) * kernel[0] * kernel[1] + (out_channels if layer.get("bias") else 0)
    return (out_channels, dims[0].size_out, dims[1].size_out), dims, params


def _pool2d(layer: _Layer, c, hw):
    kernel = layer.pair("kernel_size")
    stride = kernel if layer.get("stride") is None else layer.pair("stride")
    padding = layer.pair("padding", minimum=0)
    dilation = layer.pair("dilation") if "dilation" in OPTIONS[layer.type] else (1, 1)
    for name, p, k in zip(_DIM_NAMES, padding, kernel):
        if p > k // 2:
            layer.fail(f"{name} padding {p} is more than half the kernel_size {k}: use padding <= {k // 2}")
    if layer.get("return_indices"):
        layer.fail("return_indices: true makes the layer return a tuple that the next layer cannot take")
    divisor = layer.get("divisor_override")
    if divisor is not None and (not _is_int(divisor) or divisor == 0):
        layer.fail(f"divisor_override must be a nonzero integer or null, got {divisor!r}")
    dims = _windows(
        layer, hw, tuple((p, p) for p in padding), dilation, kernel, stride, layer.get("ceil_mode")
    )
    return (c, dims[0].size_out, dims[1].size_out), dims, 0


def _adaptive_pool2d(layer: _Layer, c, hw):
    if layer.get("return_indices"):
        layer.fail("return_indices: true makes the layer return a tuple that the next layer cannot take")
    size = layer.get("output_size")
    size = (size, size) if _is_int(size) or size is None else tuple(size) if _is_seq(size) else ()
    # null keeps that dimension's input size, as in torch.
    out = tuple(n if s is None else s for n, s in zip(hw, size))
    if len(size) != 2 or not all(_is_int(s) and s >= 1 for s in out):
        layer.fail(
            f"output_size must be an integer >= 1 or a [height, width] pair of them (null keeps the "
            f"input size), got {layer.get('output_size')!r}"
        )
    dims = tuple(Dim(n, None, None, None, None, s) for n, s in zip(hw, out))
    return (c, *out), dims, 0


def _batchnorm2d(layer: _Layer, c, hw):
    layer.matches("num_features", c, "channels")
    return (c, *hw), (), 2 * c if layer.get("affine") else 0


def _dropout(layer: _Layer, shape):
    p = layer.get("p")
    if not _is_number(p) or not 0 <= p <= 1:
        layer.fail(f"p must be a probability between 0 and 1, got {p!r}")
    return shape, 0


def _flatten(layer: _Layer, shape):
    # Other dims would keep part of the image spatial, which no layer here takes.
    if layer.get("start_dim") != 1 or layer.get("end_dim") != -1:
        layer.fail("only start_dim 1 and end_dim -1 (the defaults) are supported: leave them out")
    return (math.prod(shape),), 0


def _linear(layer: _Layer, shape):
    if len(shape) != 1:
        layer.fail(
            f"needs a flat input but gets {' x '.join(map(str, shape))}: put {{type: Flatten}} before it"
        )
    layer.matches("in_features", shape[0], "features")
    out_features = layer.integer("out_features")
    return (out_features,), shape[0] * out_features + (out_features if layer.get("bias") else 0)


def _elementwise(layer: _Layer, shape):
    if layer.type == "GELU":
        layer.choice("approximate", ("none", "tanh"))
    return shape, 0


_SPATIAL = {
    "Conv2d": _conv2d,
    "MaxPool2d": _pool2d,
    "AvgPool2d": _pool2d,
    "AdaptiveAvgPool2d": _adaptive_pool2d,
    "AdaptiveMaxPool2d": _adaptive_pool2d,
    "BatchNorm2d": _batchnorm2d,
}
_ANY = {"Dropout": _dropout, "Dropout2d": _dropout, "Flatten": _flatten, "Linear": _linear}


def trace(layers, input_shape) -> list[Row]:
    """Follow an input of `input_shape` (C, H, W) through `layers` (a list of layer specs).

    Returns one `Row` per layer. Raises `BotterError` naming the layer (index and type), the dimension
    and the sizes for a stack torch would reject or one that makes any size < 1.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or not all(_is_int(n) and n >= 1 for n in input_shape):
        raise BotterError(f"input shape must be 3 integers >= 1 (channels, height, width), got {input_shape}")
    if isinstance(layers, (str, Mapping)) or not isinstance(layers, Sequence):
        raise BotterError(f"layers must be a list of layer specs, got {layers!r}")
    rows, shape, flat_at = [], input_shape, None
    for index, spec in enumerate(layers):
        layer = _Layer(index, spec, input_shape)
        dims = ()
        if layer.type in _SPATIAL_TYPES and flat_at is not None:
            layer.fail(f"needs a (C, H, W) input but layer {flat_at} flattened it: move Flatten after it")
        if layer.type in _SPATIAL:
            out, dims, params = _SPATIAL[layer.type](layer, shape[0], shape[1:])
        else:
            out, params = _ANY.get(layer.type, _elementwise)(layer, shape)
            if layer.type == "Flatten" and flat_at is None:
                flat_at = index
        rows.append(Row(index, layer.type, shape, out, dims, params, layer.kwargs))
        shape = out
    return rows


def linear_in_features(layers, input_shape) -> int:
    """in_features of a Linear after `layers` for an input of `input_shape` (C, H, W): C * H * W at the end."""
    rows = trace(layers, input_shape)
    return math.prod(rows[-1].out_shape if rows else input_shape)


def _shape_str(shape) -> str:
    return " x ".join(map(str, shape))


def _columns(lines: list[list[str]], left: int = 1) -> list[str]:
    """Align a table: the first `left` columns to the left, the rest (numbers) to the right."""
    widths = [max(map(len, col)) for col in zip(*lines)]
    return [
        "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))
        ).rstrip()
        for line in lines
    ]


def format_table(rows: list[Row]) -> str:
    """The paper computation of a traced stack as text.

    One table per spatial dimension (a column per window layer: IN, padding, dilation, kernel_size,
    stride, OUT), then each layer's shapes and parameters, the total, and the line
    `Linear in_features = C x H x W = N` for the input of the first Linear (or of one after the stack).
    """
    if not rows:
        return "no layers"
    out = [f"input: {_shape_str(rows[0].in_shape)} (C x H x W)"]
    windows = [r for r in rows if r.type in WINDOW_TYPES]
    for i, name in enumerate(_DIM_NAMES):
        dims = [r.dims[i] for r in windows]
        chain = " -> ".join(map(str, [rows[0].in_shape[i + 1]] + [d.size_out for d in dims]))
        show = lambda v: "-" if v is None else str(v)
        pad = lambda p: "-" if p is None else str(p[0]) if p[0] == p[1] else f"{p[0]}+{p[1]}"
        table = [
            [""]
            + [f"{r.index} {r.type}" + (" (ceil)" if r.kwargs.get("ceil_mode") else "") for r in windows],
            ["IN"] + [str(d.size_in) for d in dims],
            ["padding"] + [pad(d.padding) for d in dims],
            ["dilation"] + [show(d.dilation) for d in dims],
            ["kernel_size"] + [show(d.kernel_size) for d in dims],
            ["stride"] + [show(d.stride) for d in dims],
            ["OUT"] + [str(d.size_out) for d in dims],
        ]
        out += ["", f"{name}: {chain}", *_columns(table)]
    table = [["#", "layer", "in", "out", "params"]]
    table += [
        [str(r.index), r.type, _shape_str(r.in_shape), _shape_str(r.out_shape), f"{r.params:,}"] for r in rows
    ]
    out += ["", *_columns(table, left=4), f"total parameters: {sum(r.params for r in rows):,}"]
    # The Linear input as a person writes it: the last (C, H, W) before it, multiplied out.
    first_linear = next((r.index for r in rows if r.type == "Linear"), len(rows))
    shape = rows[0].in_shape
    for r in rows[:first_linear]:
        shape = r.out_shape if len(r.out_shape) == 3 else shape
    out.append(f"Linear in_features = {_shape_str(shape)} = {math.prod(shape)}")
    return "\n".join(out)
