"""botter-train: dataset, training, evaluation and the backtest of the test split."""

from omegaconf import DictConfig

from botter.cli import app, load_candles, report_backtest


def main() -> None:
    app("train", train)


def train(cfg: DictConfig, out_dir=None) -> dict:
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
    candles = load_candles(d, c["paths"]["data_dir"])
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
        report_backtest(predictions, candles, c["backtest"], Path(out_dir) / "backtest")
        print(f"run folder: {out_dir}")
    return result
