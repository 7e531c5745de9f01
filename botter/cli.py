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
        except BotterError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except OmegaConfBaseException as e:
            first = str(e).splitlines()[0]
            if "Missing mandatory value: " in first:  # a `???` in the config, maybe behind an interpolation
                key = first.rsplit(": ", 1)[-1]
                first = f"{key} has no value: give it on the command line ({key}=...)"
            print(f"error: {first}", file=sys.stderr)
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

    from botter.render import preview

    d = OmegaConf.to_container(cfg.data, resolve=True) | {"symbols": [cfg.symbol]}
    candles = _load_candles(d, cfg.paths.data_dir)[cfg.symbol]
    ends = np.linspace(d["window"] - 1, len(candles) - 1, cfg.windows).round().astype(np.int64)
    renders = [OmegaConf.to_container(r, resolve=True) for r in (cfg.render, cfg.compare)]
    preview(candles, d["window"], ends, renders, cfg.out)
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


def train() -> None:
    _app("train", _train)


def _train(cfg: DictConfig, out_dir=None) -> dict:
    """Build the dataset, train, test; `out_dir` defaults to Hydra's output dir (the run folder)."""
    from pathlib import Path

    import pandas as pd
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from botter import dataset
    from botter.evaluate import format_table
    from botter.train import pick_device, setup_distributed
    from botter.train import train as fit

    c = OmegaConf.to_container(cfg, resolve=True)
    d, ds, r = c["data"], c["dataset"], c["render"]
    out_dir = out_dir or HydraConfig.get().runtime.output_dir
    rank, _ = setup_distributed(pick_device(c["trainer"]["device"]))
    candles = _load_candles(d, c["paths"]["data_dir"])
    windows = dataset.build(
        candles, window=d["window"], horizon=d["horizon"], classes=d["classes"], timeframe=d["timeframe"],
        render=r, flat_threshold=ds["flat_threshold"], cache_dir=c["paths"]["cache_dir"] if ds["cache"] else None,
        progress=c["trainer"]["progress"] and rank == 0,
    )
    assignment = dataset.split(windows.times, timeframe=d["timeframe"], horizon=d["horizon"], **ds["split"])
    splits = {name: windows.take(assignment == i) for i, name in enumerate(dataset.SPLITS)}
    if rank == 0:
        print(f"{len(windows)} windows of {len(candles)} symbols; class balance per split:")
        print(dataset.class_balance(windows, assignment, d["classes"]).to_string())
    info = {"render": r, "timeframe": d["timeframe"], **{k: d[k] for k in ("window", "horizon", "classes")},
            "flat_threshold": ds["flat_threshold"]}
    result = fit(splits, model_kwargs={**c["model"], "input_hw": [r["height"], r["width"]]}, info=info,
                 out_dir=out_dir, config=c, **c["trainer"])
    if result:  # rank 0
        print(f"test split, model beside the baselines:\n{format_table(result)}")
        predictions = pd.read_parquet(Path(out_dir) / "predictions.parquet")
        _report_backtest(predictions, candles, c["backtest"], Path(out_dir) / "backtest")
        print(f"run folder: {out_dir}")
    return result


def paper() -> None:
    _app("paper", _paper)


def _paper(cfg: DictConfig) -> None:
    """Paper-trade a run's model on the configured feed (mode=run), or report a paper run (mode=status)."""
    from omegaconf import OmegaConf

    from botter.paper import session

    if OmegaConf.is_missing(cfg, "run_dir"):
        raise BotterError("give run_dir=<the folder of a botter-train run> (its model is what trades)")
    c = OmegaConf.to_container(cfg, resolve=True)
    if c["mode"] == "status":
        result, png = session.status(c["run_dir"], c["name"])
    elif c["mode"] == "run":
        result = session.trade(c["run_dir"], name=c["name"], feed=c["feed"], backtest=c["backtest"],
                               symbol=c["symbol"], exchange=c["exchange"], data_dir=c["paths"]["data_dir"],
                               threads=c["threads"], progress=c["progress"])
        png = None
    else:
        raise BotterError(f"mode={c['mode']!r} is not one of: run, status")
    print(result.to_string())
    if png is not None:
        print(f"equity curve: {png}")


def backtest() -> None:
    _app("backtest", _backtest)


def _backtest(cfg: DictConfig) -> dict:
    """Backtest a run's test predictions, or its model on other candles (data=...); print and write."""
    from pathlib import Path

    import pandas as pd
    from omegaconf import OmegaConf

    from botter.data.candles import between

    c = OmegaConf.to_container(cfg, resolve=True)
    run = Path(c["run_dir"])
    if not (run / "config.yaml").is_file():
        raise BotterError(f"{run} has no config.yaml: pass run_dir=<a botter-train run folder>")
    data_dir = c["paths"]["data_dir"]
    if c.get("data") is None:
        if not (run / "predictions.parquet").is_file():
            raise BotterError(f"{run} has no predictions.parquet: did its botter-train finish?")
        predictions = pd.read_parquet(run / "predictions.parquet")
        run_data = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=True)["data"]
        candles = _load_candles(run_data, data_dir)
    else:
        candles = _load_candles(c["data"], data_dir)
        predictions = _predict(run, candles, timeframe=c["data"]["timeframe"], cache_dir=c["paths"]["cache_dir"])
    p = c["period"]
    predictions = between(predictions.set_index("time"), p["start"], p["end"]).reset_index()
    return _report_backtest(predictions, candles, c["backtest"], c["out_dir"], **c["plot"])


def _report_backtest(predictions, candles: dict, backtest_cfg: dict, out_dir, start=None, end=None) -> dict:
    """Backtest predictions on their candles, print the statistics, write the report into out_dir."""
    from botter.backtest import backtest_predictions, stats_table
    from botter.plots import write_report

    results = backtest_predictions(predictions, candles, **backtest_cfg)
    print(f"backtest of {predictions.time.min()} .. {predictions.time.max()}:")
    print(stats_table(results).to_string())
    paths = write_report(results, candles, out_dir, plot_start=start, plot_end=end)
    print(f"wrote {', '.join(path.name for path in paths)} in {out_dir}")
    return results


def _load_candles(d: dict, data_dir) -> dict:
    """{symbol: candles} for a data config (the keys of configs/data/*.yaml)."""
    from botter.data import load

    return load(d["source"], d["symbols"], d["timeframe"], exchange=d["exchange"], start=d["start"],
                end=d["end"], data_dir=data_dir, **d.get("params", {}))


def _predict(run_dir, candles: dict, *, timeframe: str, cache_dir):
    """A run's model on other candles: a predictions frame like the run's predictions.parquet."""
    from botter import dataset
    from botter.train import load_model, predict, predictions_frame

    model, info = load_model(run_dir)
    if timeframe != info["timeframe"]:
        raise BotterError(f"the model of {run_dir} reads {info['timeframe']} candles, data.timeframe is "
                          f"{timeframe}: load {info['timeframe']} candles")
    windows = dataset.build(candles, window=info["window"], horizon=info["horizon"], classes=info["classes"],
                            timeframe=info["timeframe"], render=info["render"],
                            flat_threshold=info.get("flat_threshold", 0.0), cache_dir=cache_dir)
    return predictions_frame(windows, predict(model, windows.images), info["classes"])
