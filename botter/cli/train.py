"""botter-train: dataset, training, evaluation and the backtest of the test split."""

from pathlib import Path

from omegaconf import DictConfig

from botter.cli import (
    app,
    build_windows,
    load_candles,
    model_info,
    overrides,
    report_backtest,
    shown_path,
    signal_settings,
)


def main() -> None:
    app("train", train)


def train(cfg: DictConfig, out_dir=None) -> dict:
    """Build the dataset, train, test, backtest the test split and write the run folder (`out_dir`,
    default Hydra's output dir); returns the metrics (metrics.json) on rank 0, {} elsewhere."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from botter import dataset, evaluate, runs
    from botter.data import hours as market_hours
    from botter.inference import PRECISION, predictions_frame, probabilities
    from botter.train import check_resume, check_settings, fingerprint, fit, pick_device, setup_distributed

    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    d, ds, r, t = c["data"], c["dataset"], c["render"], c["trainer"]
    out_dir = Path(out_dir or HydraConfig.get().runtime.output_dir)
    check_settings(**t)  # before anything is written
    rank, _ = setup_distributed(pick_device(t["device"]))
    if rank == 0:
        runs.claim(out_dir, kind="train", resume=t["resume"])  # before the slow work: a refusal comes at once
    candles = load_candles(d, c["paths"]["data_dir"])
    expected = fingerprint(c, candles)
    if t["resume"]:
        check_resume(out_dir, expected)  # before anything is written
    candles, hours, windows = build_windows(c, progress=t["progress"] and rank == 0, candles=candles)
    split = {k: v for k, v in ds["split"].items() if k != "purge"}
    assignment = dataset.split(windows.times, windows.exits(ds["split"]["purge"]), **split)
    dataset.check_splits(windows, assignment)
    train_w, val_w, test_w = (windows.take(assignment == i) for i in range(3))
    if rank == 0:
        print(f"{len(windows)} windows of {len(candles)} symbol{'s' * (len(candles) > 1)} "
              f"(market hours: {market_hours.describe(hours)}); "
              "labelled windows per class and split:")
        print(dataset.class_balance(windows, assignment, d["classes"]).to_string())
        runs.start(out_dir, c, kind="train", resume=t["resume"], overrides=overrides())
    try:
        model_kwargs = {**c["model"], "input_hw": [r["height"], r["width"]]}
        fitted = fit(train_w.labelled(), val_w.labelled(), model_kwargs=model_kwargs, out_dir=out_dir,
                     fingerprint=expected, **t)
        if fitted is None:  # not rank 0
            return {}
        runs.save_model(out_dir, state_dicts=[fitted.model.state_dict()], model_kwargs=model_kwargs,
                        info=model_info(c, hours))
        device = next(fitted.model.parameters()).device
        probs = probabilities([fitted.model], test_w, device=device, progress=t["progress"])
        predictions = predictions_frame(test_w, probs, d["classes"])
        known = test_w.labels >= 0
        labels = test_w.labels[known].astype(int)
        base = evaluate.baseline_predictions(train_w.labelled(), test_w.labelled(), classes=d["classes"],
                                             flat_threshold=ds["flat_threshold"])
        result = {
            "test": evaluate.metrics(labels, probs[known]),
            "baselines": evaluate.score_baselines(labels, base),
            "best_epoch": fitted.best_epoch,
            "epochs": len(fitted.history),
            "test_windows": {"decided": len(test_w), "labelled": int(known.sum())},
        }
        print(f"test split ({known.sum()} labelled of {len(test_w)} decided windows), model beside the baselines:\n"
              f"{evaluate.format_table(result)}")
        bt = report_backtest(predictions, candles, signal_settings(c["backtest"], d["horizon"]), out_dir / "backtest")
        result["backtest"] = evaluate.backtest_figures(bt["portfolio"].stats)
        result["intervals"] = evaluate.bootstrap(test_w.times[known], labels, probs[known], base,
                                                 horizon=d["horizon"], equity=bt["portfolio"].equity,
                                                 buy_hold=bt["portfolio"].buy_hold, **c["bootstrap"])
        print(evaluate.format_intervals(result["intervals"]))
        runs.finish(out_dir, predictions=predictions, metrics=result, symbols=list(candles), timeframe=d["timeframe"],
                    hours=hours, periods=dataset.periods(windows, assignment),
                    predictions_precision={"device": device.type, "dtype": PRECISION},
                    training={"precision": fitted.precision, "batch_size": fitted.batch_size, "compiled": fitted.compiled})
    except BaseException as e:  # a failed or killed run must not look like a finished one
        if rank == 0:
            runs.fail(out_dir, e)
        raise
    print(f"run folder: {shown_path(out_dir)}")
    return result
