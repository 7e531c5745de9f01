"""botter-render: a preview grid of rendered windows (PNG)."""

from omegaconf import DictConfig

from botter.cli import app, load_candles


def main() -> None:
    app("render", render)


def render(cfg: DictConfig) -> None:
    import numpy as np
    from omegaconf import OmegaConf

    from botter.render import preview

    d = OmegaConf.to_container(cfg.data, resolve=True) | {"symbols": [cfg.symbol]}
    candles = load_candles(d, cfg.paths.data_dir)[cfg.symbol]
    ends = np.linspace(d["window"] - 1, len(candles) - 1, cfg.windows).round().astype(np.int64)
    renders = [OmegaConf.to_container(r, resolve=True) for r in (cfg.render, cfg.compare)]
    preview(candles, d["window"], ends, renders, cfg.out)
    print(f"wrote {cfg.out}: {cfg.windows} windows of {cfg.symbol}, {' vs '.join(r['name'] for r in renders)}")
