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
    input_shape = (m["in_channels"], cfg.render.height, cfg.render.width)
    rows = shapes.trace(layer_specs(m["layers"], m["head"]), input_shape)
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


def fetch() -> None:
    _app("fetch", _fetch)


def _fetch(cfg: DictConfig) -> None:
    from omegaconf import OmegaConf

    from botter.data import store_path, validate
    from botter.data.csvfile import read_csv_candles, symbol_from_name
    from botter.data.fetch import fetch_to_store, make_exchange
    from botter.data.store import append_store, read_store
    from botter.data.validate import apply_policy

    policy = OmegaConf.to_container(cfg.validate)
    if cfg.source == "csv":
        if not cfg.path:
            raise BotterError("source=csv needs path=<file.csv>")
        candles, timeframe = read_csv_candles(cfg.path, cfg.timeframe)
        symbol = cfg.symbol or symbol_from_name(cfg.path)
        kept, report = apply_policy(candles, timeframe, policy)
        print(f"{cfg.path} as {symbol} {timeframe}: {report}")
        path = store_path(cfg.paths.data_dir, cfg.exchange.id, symbol, timeframe)
        before = len(read_store(path))
        stored = append_store(path, kept)
        print(f"{path}: {len(stored) - before} candles added, {len(candles) - len(kept)} dropped, {len(stored)} stored")
        return
    if cfg.source != "exchange":
        raise BotterError(f"source={cfg.source!r} is not one of: exchange, csv")
    if not cfg.symbol or not cfg.timeframe:
        raise BotterError("give symbol=BASE/QUOTE and timeframe= (like symbol=BTC/USDT timeframe=1h)")
    exchange = make_exchange(
        cfg.exchange.id, OmegaConf.to_container(cfg.exchange.ccxt_config, resolve=True), sandbox=cfg.exchange.sandbox
    )
    path = store_path(cfg.paths.data_dir, cfg.exchange.id, cfg.symbol, cfg.timeframe)
    stored, added, dropped = fetch_to_store(
        exchange, cfg.symbol, cfg.timeframe, path, since=cfg.since, until=cfg.until, policy=policy,
        retry=OmegaConf.to_container(cfg.retry), progress=cfg.progress,
    )
    print(f"{path}: {added} candles added, {dropped} dropped, {len(stored)} stored")
    print(validate(stored, cfg.timeframe))
