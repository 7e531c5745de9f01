"""botter-backtest: backtest a run's predictions, or its model on other candles."""

from omegaconf import DictConfig

from botter.cli import app, load_candles, report_backtest
from botter.errors import BotterError


def main() -> None:
    app("backtest", backtest)


def backtest(cfg: DictConfig) -> dict:
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
        candles = load_candles(run_data, data_dir)
    else:
        candles = load_candles(c["data"], data_dir)
        predictions = predict_candles(run, candles, timeframe=c["data"]["timeframe"], cache_dir=c["paths"]["cache_dir"])
    p = c["period"]
    predictions = between(predictions.set_index("time"), p["start"], p["end"]).reset_index()
    return report_backtest(predictions, candles, c["backtest"], c["out_dir"], **c["plot"])


def predict_candles(run_dir, candles: dict, *, timeframe: str, cache_dir):
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

