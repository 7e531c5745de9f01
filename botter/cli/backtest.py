"""botter-backtest: backtest a run's predictions, or its model on other candles."""

from pathlib import Path

from omegaconf import DictConfig

from botter.cli import app, given, load_candles, report_backtest, signal_settings
from botter.errors import BotterError


def main() -> None:
    app("backtest", backtest)


def backtest(cfg: DictConfig) -> dict:
    """Backtest a run's own predictions, or its model on other candles (data=...); print and write
    the report into its own folder. The model on candles it was fitted or early-stopped on is
    refused unless allow_in_sample (then every output says IN-SAMPLE)."""
    from omegaconf import OmegaConf, open_dict

    from botter import inference, runs
    from botter.data.candles import between

    run = runs.open_run(cfg.run_dir)
    with open_dict(cfg):  # the candles are the model's: data=planted draws them for its render.ma
        cfg.render = run.config["render"]
    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    out_dir = Path(c["out_dir"] or run.path / "backtests" / runs.plain_name(c["name"], "name", run.path / "backtests"))
    if out_dir.exists():
        raise BotterError(f"{out_dir} exists: give this backtest another name= (reports are never overwritten)")
    data_dir = c["paths"]["data_dir"]
    own = c.get("data") is None
    if own:  # out of sample by construction: the test split, or each walk-forward fold's test span
        predictions = run.predictions()
        candles = load_candles(run.config["data"], data_dir)
    else:
        d = c["data"]
        if given("data.timeframe") and d["timeframe"] != run.timeframe:
            raise BotterError(f"the model of {run.path} reads {run.timeframe} candles, data.timeframe is "
                              f"{d['timeframe']}: leave data.timeframe out (the model's is used)")
        candles = load_candles({**d, "timeframe": run.timeframe}, data_dir)
        predictor = inference.load(run)
        predictions = predictor.predict(candles, cache_dir=c["paths"]["cache_dir"], progress=True)
    p = c["period"]
    predictions = between(predictions.set_index("time"), p["start"], p["end"]).reset_index()
    if predictions.empty:
        raise BotterError(f"no decision falls in period.start={p['start']} .. period.end={p['end']}: "
                          "pick a period inside the candles")
    spans = predictions.groupby("symbol")["time"].agg(["min", "max"])
    decisions = {s: (row["min"], row["max"]) for s, row in spans.iterrows()}
    in_sample = not own and run.guard(decisions, allow=c["allow_in_sample"], what="this backtest", candles=candles,
                                      data_dir=data_dir)
    settings = signal_settings(c["backtest"], run.config["data"]["horizon"])
    return report_backtest(predictions, candles, settings, out_dir, **c["plot"], in_sample=in_sample)
