"""The console scripts: thin Hydra apps that wire the stages together.

Every value can be overridden on the command line (`botter-train trainer.lr=3e-4`). Bad input
(config, data, symbol, network) prints one line and exits with code 2.
"""

import sys

import hydra
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from botter import config  # noqa: F401  (registers the resolvers the configs use)
from botter.errors import BotterError


def _app(config_name: str, task) -> None:
    """Run `task(cfg)` as the Hydra app of `configs/<config_name>.yaml`."""
    started = False

    @hydra.main(config_path="pkg://botter.configs", config_name=config_name, version_base="1.3")
    def main(cfg: DictConfig):
        nonlocal started
        started = True
        try:
            return task(cfg)
        except (BotterError, OmegaConfBaseException) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    try:
        main()
    except SystemExit as e:
        # Hydra prints its own short message and exits 1 for an override or config option it
        # cannot compose: that is bad input too.
        if e.code == 1 and not started:
            sys.exit(2)
        raise


def shape() -> None:
    _app("shape", _shape)


def _shape(cfg: DictConfig) -> None:
    from omegaconf import OmegaConf

    from botter import shapes
    from botter.model import layer_specs

    m = OmegaConf.to_container(cfg.model, resolve=True)
    rows = shapes.trace(layer_specs(m["layers"], m["head"]), (m["in_channels"], cfg.render.height, cfg.render.width))
    print(shapes.format_table(rows))


def render() -> None:
    _app("render", _render)


def _render(cfg: DictConfig) -> None:
    import numpy as np
    from omegaconf import OmegaConf

    from botter.data import load
    from botter.render import preview

    d = cfg.data
    candles = load(d.source, [cfg.symbol], d.timeframe, exchange=d.exchange, start=d.start, end=d.end,
                   data_dir=cfg.paths.data_dir)[cfg.symbol]
    ends = np.linspace(d.window - 1, len(candles) - 1, cfg.windows).round().astype(np.int64)
    renders = [OmegaConf.to_container(r, resolve=True) for r in (cfg.render, cfg.compare)]
    preview(candles, d.window, ends, renders, cfg.out)
    print(f"wrote {cfg.out}: {cfg.windows} windows of {cfg.symbol}, {' vs '.join(r['name'] for r in renders)}")
