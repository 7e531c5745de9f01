"""botter-shape: the layer-by-layer size table of a model config."""

from omegaconf import DictConfig

from botter.cli import app


def main() -> None:
    app("shape", shape)


def shape(cfg: DictConfig) -> None:
    from omegaconf import OmegaConf

    from botter import shapes
    from botter.model import layer_specs

    m = OmegaConf.to_container(cfg.model, resolve=True)
    input_shape = (m["in_channels"], cfg.render.height, cfg.render.width)
    rows = shapes.trace(layer_specs(m["layers"], m["head"]), input_shape)
    print(shapes.format_table(rows))
