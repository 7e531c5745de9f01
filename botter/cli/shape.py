"""botter-shape: the layer-by-layer size table of a model config."""

from omegaconf import DictConfig

from botter.cli import app


def main() -> None:
    app("shape", shape)


def shape(cfg: DictConfig) -> None:
    from omegaconf import OmegaConf

    from botter import shapes
    from botter.model import layer_specs
    from botter.render import check_size

    m = OmegaConf.to_container(cfg.model, resolve=True)
    r = cfg.render
    check_size(r.name, height=r.height, width=r.width, window=cfg.data.window, volume=r.get("volume", True))
    input_shape = (m["in_channels"], r.height, r.width)
    rows = shapes.trace(layer_specs(m["layers"], m["head"]), input_shape)
    print(shapes.format_table(rows))
