"""botter-render: a preview grid of rendered windows (PNG)."""

from omegaconf import DictConfig

from botter.cli import app, load_candles
from botter.errors import BotterError


def main() -> None:
    app("render", render)


def render(cfg: DictConfig) -> None:
    from pathlib import Path

    import numpy as np
    from omegaconf import OmegaConf

    from botter.render import preview

    if isinstance(cfg.windows, bool) or not isinstance(cfg.windows, int) or cfg.windows < 1:
        raise BotterError(f"windows={cfg.windows}: a preview shows 1 window or more; set windows to 1 or more")
    d = OmegaConf.to_container(cfg.data, resolve=True) | {"symbols": [cfg.symbol]}
    candles = load_candles(d, cfg.paths.data_dir)[cfg.symbol]
    ends = np.linspace(d["window"] - 1, len(candles) - 1, cfg.windows).round().astype(np.int64)
    renders = [OmegaConf.to_container(r, resolve=True) for r in (cfg.render, cfg.compare)]
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    preview(candles, d["window"], ends, renders, cfg.out)
    print(f"wrote {cfg.out}: {cfg.windows} windows of {cfg.symbol}, {' vs '.join(r['name'] for r in renders)}")
