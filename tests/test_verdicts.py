"""Honest verdicts through the real commands: a run trained on the symbols whose test period has
gaps (XMR/BTC, DASH/BTC) backtests and paper-trades its test period fill for fill; in-sample
periods are refused unless asked for."""

import json

import numpy as np
import pandas as pd
import pytest
from paper_helpers import tables
from test_paper import assert_same_fills, expected_fills

from botter.cli.backtest import backtest
from botter.cli.paper import paper
from botter.cli.train import train
from botter.config import compose
from botter.data import load_sample
from botter.errors import BotterError
from botter.paper import session
from botter.runs import open_run

SYMBOLS = ("XMR/BTC", "DASH/BTC")


@pytest.fixture(scope="module")
def gapped_run(tmp_path_factory):
    """A small run on XMR/BTC and DASH/BTC whose test period (from 2018-01-26 12:00) holds all four
    gaps of the shipped samples; thresholds that make its model trade."""
    root = tmp_path_factory.mktemp("gapped")
    cfg = compose("train", [
        "data.symbols=[XMR/BTC,DASH/BTC]", "data.start=2018-01-22", f"paths.data_dir={root / 'data'}",
        "dataset.split.val_start=2018-01-25T12:00", "dataset.split.test_start=2018-01-26T12:00",
        "model.layers=[{type:Conv2d,out_channels:4,kernel_size:5,stride:2},{type:ReLU},{type:MaxPool2d,kernel_size:4}]",
        "trainer.max_epochs=1", "trainer.progress=false", "trainer.device=cpu", "dataset.cache=false",
    ])
    train(cfg, out_dir=root / "run")
    run = root / "run"
    p = open_run(run).predictions()
    bt = {"threshold_up": float(np.quantile(p["p_up"], 0.7)), "threshold_down": float(np.quantile(p["p_down"], 0.7))}
    return run, [f"backtest.{k}={v}" for k, v in bt.items()]


@pytest.mark.slow
@pytest.mark.parametrize("symbol", SYMBOLS)
def test_backtest_and_paper_of_a_gapped_test_period_agree_fill_for_fill(gapped_run, symbol):
    run, thresholds = gapped_run
    start = open_run(run).test_period(symbol)[0]
    name = symbol.replace("/", "-")
    result = backtest(compose("backtest", [f"run_dir={run}", "data=sample", f"data.symbols=[{symbol}]",
                                           f"period.start='{start:%Y-%m-%dT%H:%M}'", f"name={name}", *thresholds]))
    paper(compose("paper", [f"run_dir={run}", f"symbol={symbol}", f"name={name}", "progress=false", *thresholds]))
    ledger = tables(session.paper_dir(run, name) / "ledger.sqlite")
    r = result[symbol]
    candles = load_sample(symbol).loc[r.equity.index]
    # Every candle of the test period is traded by both, the ones just before a gap too: a decision
    # never knows that a gap is coming.
    gaps = candles.index[1:][np.diff(candles.index) > pd.Timedelta("5min")]
    assert len(gaps) == 2 and len(r.trades) > 10
    assert ledger["bars"]["time"].tolist() == candles.index.tolist()
    decided = ledger["decisions"].dropna(subset=["p_up"])["time"]
    for g in gaps:
        before = candles.index[candles.index.get_loc(g) - 6 : candles.index.get_loc(g)]
        assert before.isin(decided).all()
    assert_same_fills(ledger["fills"], expected_fills(r, candles))
    np.testing.assert_allclose(ledger["bars"]["equity"].iloc[:-1], r.equity.iloc[:-1], rtol=1e-9)
    # The run's own predictions (botter-backtest run_dir=<run>) are the same numbers.
    own = open_run(run).predictions().query("symbol == @symbol")
    other = ledger["decisions"].dropna(subset=["p_up"])  # the test period runs to the last candle
    assert own["time"].tolist() == other["time"].tolist() and own["p_up"].tolist() == other["p_up"].tolist()


@pytest.mark.slow
def test_in_sample_paper_runs_are_refused_unless_asked_and_then_marked(gapped_run, capsys):
    run, _ = gapped_run
    base = [f"run_dir={run}", "symbol=XMR/BTC", "progress=false", "feed.start=2018-01-24", "feed.end=2018-01-24T06:00"]
    with pytest.raises(BotterError, match="this paper run would be in-sample: XMR/BTC"):
        paper(compose("paper", [*base, "name=refused"]))
    assert not session.paper_dir(run, "refused").exists()
    paper(compose("paper", [*base, "name=asked", "allow_in_sample=true"]))
    paper(compose("paper", [f"run_dir={run}", "name=asked", "mode=status"]))
    assert "IN-SAMPLE" in capsys.readouterr().out
    # feed.end alone replays the test period up to it: out of sample, nothing refused.
    paper(compose("paper", [f"run_dir={run}", "symbol=XMR/BTC", "progress=false", "name=until",
                            "feed.end=2018-01-27T00:00"]))
    bars = tables(session.paper_dir(run, "until") / "ledger.sqlite")["bars"]
    assert bars["time"].iloc[0] == open_run(run).test_period("XMR/BTC")[0]


def test_run_json_records_what_the_model_was_fitted_on(gapped_run):
    run, _ = gapped_run
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "complete" and meta["symbols"] == list(SYMBOLS)
    for symbol in SYMBOLS:
        spans = {k: [pd.Timestamp(t) for t in v] for k, v in meta["periods"][symbol].items()}
        assert spans["train"][0] < spans["train"][1] <= spans["val"][0] < spans["val"][1] <= spans["test"][0]
        assert spans["test"][0] == pd.Timestamp("2018-01-26 12:00", tz="UTC")
    assert meta["predictions_precision"] == {"device": "cpu", "dtype": "float32"}
