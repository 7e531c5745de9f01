"""botter-paper: paper-trade a run's model on a feed, or report a paper run."""

from omegaconf import DictConfig

from botter.cli import app, signal_settings
from botter.errors import BotterError


def main() -> None:
    app("paper", paper)


def paper(cfg: DictConfig) -> None:
    """Paper-trade a run's model on the configured feed (mode=run), or report a paper run (mode=status)."""
    from omegaconf import OmegaConf

    from botter.paper import session
    from botter.runs import open_run

    if OmegaConf.is_missing(cfg, "run_dir"):
        raise BotterError("give run_dir=<the folder of a botter-train run> (its model is what trades)")
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    if c["symbol"] is not None and c["symbols"] is not None:
        raise BotterError(f"symbol={c['symbol']} and symbols={c['symbols']} are both given: give one of them")
    symbols = [c["symbol"]] if c["symbol"] is not None else c["symbols"]
    if isinstance(symbols, str):
        raise BotterError(f"symbols={symbols} must be a list, like symbols=[ETH/BTC,LTC/BTC] (or symbol={symbols})")
    if c["mode"] == "status":
        result, png = session.status(c["run_dir"], c["name"])
    elif c["mode"] == "run":
        horizon = open_run(c["run_dir"]).config["data"]["horizon"]
        result = session.trade(c["run_dir"], name=c["name"], feed=c["feed"],
                               backtest=signal_settings(c["backtest"], horizon), symbols=symbols,
                               exchange=c["exchange"], validate=c["validate"], data_dir=c["paths"]["data_dir"],
                               threads=c["threads"], progress=c["progress"], allow_in_sample=c["allow_in_sample"])
        png = None
    else:
        raise BotterError(f"mode={c['mode']!r} is not one of: run, status")
    print(result.to_string())
    if png is not None:
        print(f"equity curve: {png}")
