"""botter-walkforward: folds over time, an ensemble per fold, one out-of-sample report with intervals."""

from pathlib import Path

from omegaconf import DictConfig

from botter.cli import app, build_windows, model_info, overrides, report_backtest, shown_path, signal_settings


def main() -> None:
    app("walkforward", walkforward)


def walkforward(cfg: DictConfig, out_dir=None) -> dict:
    """Build the dataset, train and test every fold, backtest the out-of-sample predictions and write
    the run folder (`out_dir`, default Hydra's output dir); returns the metrics (metrics.json)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from botter import dataset, evaluate, runs
    from botter import walkforward as wf
    from botter.backtest import backtest_predictions
    from botter.data import hours as market_hours
    from botter.inference import PRECISION, predictions_frame
    from botter.train import check_settings, pick_device

    c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    d, ds, r, t, w = c["data"], c["dataset"], c["render"], c["trainer"], c["walkforward"]
    out_dir = Path(out_dir or HydraConfig.get().runtime.output_dir)
    wf.check_settings(**w, horizon=d["horizon"])  # everything that can be checked before a file is written
    check_settings(**t)
    device = pick_device(t["device"])
    runs.claim(out_dir, kind="walkforward")  # before the slow work: a refusal comes at once
    candles, hours, windows = build_windows(c, progress=t["progress"])
    folds = wf.make_folds(windows.times, windows.exits(w["purge"]), train=w["train"], val=w["val"], step=w["step"],
                          mode=w["mode"])
    wf.check_folds(windows, folds, w["purge"])
    print(f"{len(windows)} windows of {len(candles)} symbol{'s' * (len(candles) > 1)} (market hours: {market_hours.describe(hours)}); "
          f"{len(folds)} {w['mode']} fold{'s' * (len(folds) > 1)}, {w['ensemble']} model{'s' * (w['ensemble'] > 1)} each:")
    runs.start(out_dir, c, kind="walkforward", overrides=overrides())
    try:
        model_kwargs = {**c["model"], "input_hw": [r["height"], r["width"]]}
        outcome = wf.run(windows, folds, seeds=[t["seed"] + m for m in range(w["ensemble"])], model_kwargs=model_kwargs,
                         trainer=t, work_dir=out_dir, devices=w["devices"], predict_device=device)

        tested = outcome.fold > 0
        predictions = predictions_frame(windows.take(tested), outcome.probs[tested], d["classes"])
        predictions.insert(2, "fold", outcome.fold[tested])
        rows, pooled = wf.scores(windows, folds, outcome, classes=d["classes"], flat_threshold=ds["flat_threshold"])
        settings = signal_settings(c["backtest"], d["horizon"])
        fold_backtests = [backtest_predictions(predictions[predictions["fold"] == f.number], candles, **settings)
                          ["portfolio"].stats for f in folds]
        table = wf.fold_table(rows, fold_backtests)
        print(f"\nper fold (test spans, out of sample; baselines fitted on each fold's train span):\n"
              f"{table.reset_index().to_string(index=False, float_format=lambda v: f'{v:.4f}')}")
        result = {
            "test": evaluate.metrics(pooled["labels"], pooled["probs"]),
            "baselines": evaluate.score_baselines(pooled["labels"], pooled["baselines"]),
            "test_windows": {"decided": int(tested.sum()), "labelled": len(pooled["labels"])},
        }
        first, last = predictions["time"].min(), predictions["time"].max()
        print(f"\nout-of-sample period {first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} ({len(pooled['labels'])} "
              f"labelled of {tested.sum()} decided windows), model beside the baselines:\n{evaluate.format_table(result)}")
        backtest = report_backtest(predictions, candles, settings, out_dir / "backtest")["portfolio"]
        result["backtest"] = evaluate.backtest_figures(backtest.stats)
        result["intervals"] = evaluate.bootstrap(pooled["times"], pooled["labels"], pooled["probs"], pooled["baselines"],
                                                 horizon=d["horizon"], equity=backtest.equity, buy_hold=backtest.buy_hold,
                                                 **c["bootstrap"])
        print(evaluate.format_intervals(result["intervals"]))
        result["folds"] = [{k: v for k, v in row.items() if k in ("fold", "windows", "labelled", "test", "baselines")}
                           for row in rows]
        sharpe = result["intervals"]["sharpe"]
        wf.plot_folds(table, out_dir / "folds.png")
        wf.plot_equity(backtest.equity, backtest.buy_hold, folds, out_dir / "equity.png",
                       title=f"out of sample, {len(folds)} folds: return {backtest.stats['Return [%]']:+.2f} %, Sharpe "
                             f"{sharpe['value']:.3g} [{sharpe['low']:.3g}, {sharpe['high']:.3g}] "
                             f"({100 * result['intervals']['level']:g} %)")
        print(f"wrote folds.png, equity.png in {shown_path(out_dir)}")

        runs.save_model(out_dir, state_dicts=outcome.states, model_kwargs=model_kwargs, info=model_info(c, hours))
        runs.write_table(out_dir, "folds.csv", table)
        runs.write_table(out_dir, "training.csv", outcome.history.set_index("fold"))
        runs.finish(out_dir, predictions=predictions, metrics=result, symbols=list(candles), timeframe=d["timeframe"],
                    hours=hours, periods=dataset.periods(windows, folds[-1].assignment),
                    folds=[{"fold": f.number, "periods": dataset.periods(windows, f.assignment)} for f in folds],
                    predictions_precision={"device": device.type, "dtype": PRECISION},
                    training={"precision": outcome.precision, "batch_size": outcome.batch_size})
    except BaseException as e:  # a failed or killed run must not look like a finished one
        runs.fail(out_dir, e)
        raise
    print(f"run folder: {shown_path(out_dir)} (model.pt: the last fold's {w['ensemble']} model{'s' * (w['ensemble'] > 1)})")
    return result
