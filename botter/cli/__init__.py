"""The console scripts: thin Hydra apps that wire the stages together, one module per command.

Each module has `main()` (the console script) and a public function named after the command that
takes the composed config (what the tests call). Every value can be overridden on the command line
(`botter-train trainer.lr=3e-4`). Bad input (config, data, symbol, network) prints one line and
exits with code 2.
"""

import sys

import hydra
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from botter import config  # noqa: F401  (registers the resolvers the configs use)
from botter.errors import BotterError


def app(config_name: str, task) -> None:
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


def given(key: str) -> bool:
    """Whether `key` was set on the command line of this Hydra app (False outside one)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in HydraConfig.get().overrides.task)


def load_candles(d: dict, data_dir) -> dict:
    """{symbol: candles} for a data config (the keys of configs/data/*.yaml)."""
    from botter.data import load

    return load(d["source"], d["symbols"], d["timeframe"], exchange=d["exchange"], start=d["start"],
                end=d["end"], data_dir=data_dir, **d.get("params", {}))


def build_windows(c: dict, *, progress: bool):
    """(candles, hours, windows) of a resolved train or walkforward config: the candles of its data,
    the market hours (data.hours resolved) and every decidable window (botter.dataset.build)."""
    from botter import dataset
    from botter.data import hours as market_hours

    d, ds = c["data"], c["dataset"]
    candles = load_candles(d, c["paths"]["data_dir"])
    hours = market_hours.resolve(d["hours"], candles, d["timeframe"])
    windows = dataset.build(
        candles, window=d["window"], horizon=d["horizon"], classes=d["classes"], timeframe=d["timeframe"],
        render=c["render"], hours=hours, flat_threshold=ds["flat_threshold"],
        cache_dir=c["paths"]["cache_dir"] if ds["cache"] else None, progress=progress,
    )
    return candles, hours, windows


def model_info(c: dict, hours) -> dict:
    """What a run's model reads (model.pt's info: botter.inference.Predictor), from its resolved config."""
    d = c["data"]
    return {"render": c["render"], "timeframe": d["timeframe"], "hours": hours,
            "flat_threshold": c["dataset"]["flat_threshold"], **{k: d[k] for k in ("window", "horizon", "classes")}}


def signal_settings(backtest_cfg: dict, horizon: int) -> dict:
    """The backtest config with min_hold filled in: null holds each position for the label's horizon
    (the model forecasts the return of a position held that long)."""
    return {**backtest_cfg, "min_hold": horizon if backtest_cfg["min_hold"] is None else backtest_cfg["min_hold"]}


def report_backtest(predictions, candles: dict, backtest_cfg: dict, out_dir, start=None, end=None, *,
                    in_sample: bool = False) -> dict:
    """Backtest predictions on their candles, print the statistics, write the report into out_dir;
    `in_sample` marks every table, file and picture IN-SAMPLE."""
    from botter.backtest import backtest_predictions, stats_table
    from botter.plots import write_report

    results = backtest_predictions(predictions, candles, **backtest_cfg)
    sample = "IN-SAMPLE" if in_sample else "out-of-sample"
    print(f"{'IN-SAMPLE ' if in_sample else ''}backtest of {predictions.time.min()} .. {predictions.time.max()}:")
    print(stats_table(results, sample=sample).to_string())
    paths = write_report(results, candles, out_dir, plot_start=start, plot_end=end, sample=sample)
    print(f"wrote {', '.join(path.name for path in paths)} in {out_dir}")
    return results
