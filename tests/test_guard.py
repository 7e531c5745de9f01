"""The in-sample guard knows a market by its candles, not only by its name: a symbol spelt another
way is refused where the data enters, and candles equal to the training candles under another
name (planted data under any name, a market stored twice) are in-sample."""

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from test_backtest import toy_run

from botter import runs
from botter.cli.backtest import backtest
from botter.config import compose
from botter.data import load, load_config, load_sample
from botter.data.store import append_store, store_path
from botter.errors import BotterError
from botter.model import build_model


def planted_run(run_dir, episodes=60) -> dict:
    """A finished run folder on planted data (PLANTED/BTC): fitted on its first 80 % of candles,
    toy predictions on the rest, an untrained model."""
    c = OmegaConf.to_container(compose("train", ["data=planted", f"data.params.episodes={episodes}"]), resolve=True)
    runs.start(run_dir, c)
    df = load_config(c["data"])["PLANTED/BTC"]
    cut = int(0.8 * len(df))
    t = [str(df.index[i]) for i in (40, cut - 100, cut - 100, cut, cut, len(df) - 1)]
    predictions = pd.DataFrame({"time": df.index[cut:].as_unit("ns"), "symbol": "PLANTED/BTC", "p_down": 0.5,
                                "p_up": 0.5, "label": 0})
    kwargs = {**c["model"], "input_hw": [c["render"]["height"], c["render"]["width"]]}
    torch.manual_seed(0)
    info = {"render": c["render"], "timeframe": "5m", "window": 20, "horizon": 5, "classes": 2, "hours": None}
    runs.save_model(run_dir, state_dicts=[build_model(**kwargs).state_dict()], model_kwargs=kwargs, info=info)
    runs.finish(run_dir, predictions=predictions, metrics={}, symbols=["PLANTED/BTC"], timeframe="5m", hours=None,
                periods={"PLANTED/BTC": {"train": t[:2], "val": t[2:4], "test": t[4:]}})
    return c


@pytest.mark.parametrize("symbol", ["ETH_BTC", "ETH:BTC", "ETHBTC", "ETH/BTC/", "../ETH/BTC", "ETH_X/BTC"])
def test_a_symbol_not_spelt_base_quote_is_refused_where_data_enters(tmp_path, symbol):
    for source in ("sample", "store", "planted"):
        with pytest.raises(BotterError, match=f"symbol '{symbol}' is not spelt BASE/QUOTE: .* like ETH/BTC"):
            load(source, [symbol], "5m", data_dir=tmp_path)
    with pytest.raises(BotterError, match="is not spelt BASE/QUOTE"):
        store_path(tmp_path, "binance", symbol, "5m")


def test_planted_candles_under_another_name_are_in_sample(tmp_path):
    planted_run(tmp_path / "run")
    args = [f"run_dir={tmp_path / 'run'}", "data=planted", "data.params.episodes=60", "backtest.threshold_up=0.4"]
    with pytest.raises(BotterError, match=r"would be in-sample: OTHER/BTC \(the candles of PLANTED/BTC\) .* starts "
                                          "before the end of the training period"):
        backtest(compose("backtest", [*args, "data.symbols=[OTHER/BTC]", "name=renamed"]))
    assert not (tmp_path / "run" / "backtests").exists()
    # the run's render config comes with it: data=planted reads render.ma, which botter-backtest has not
    marked = backtest(compose("backtest", [*args, "data.symbols=[OTHER/BTC]", "name=asked", "allow_in_sample=true"]))
    assert marked["portfolio"].stats["# Trades"] > 0
    # other planted candles (another seed) were never seen: out of sample under any name
    backtest(compose("backtest", [*args, "data.symbols=[OTHER/BTC]", "data.params.seed=1", "name=fresh"]))


def test_a_market_stored_under_another_name_is_in_sample(tmp_path):
    toy_run(tmp_path / "run")
    eth = load_sample("ETH/BTC")
    append_store(store_path(tmp_path / "data", "binance", "ETHX/BTC", "5m"), eth)
    # a market that only shares times (other prices) is another market
    append_store(store_path(tmp_path / "data", "binance", "OTHER/BTC", "5m"), eth * np.float64(1.5))
    args = [f"run_dir={tmp_path / 'run'}", "data=store", f"paths.data_dir={tmp_path / 'data'}",
            "data.start=2018-01-20"]
    with pytest.raises(BotterError, match=r"would be in-sample: ETHX/BTC \(the candles of ETH/BTC\)"):
        backtest(compose("backtest", [*args, "data.symbols=[ETHX/BTC]", "name=x"]))
    backtest(compose("backtest", [*args, "data.symbols=[OTHER/BTC]", "name=other"]))
