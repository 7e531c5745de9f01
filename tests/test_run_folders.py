"""A damaged run folder is refused when it is opened, with a line naming the file and what to do,
never a traceback from deep inside pandas, OmegaConf or torch."""

import json
import shutil

import pytest
import torch

from botter import inference, runs
from botter.cli.backtest import backtest
from botter.config import compose
from botter.errors import BotterError


@pytest.fixture
def run(tiny_run, tmp_path):
    """A copy of the tiny run to damage."""
    shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("paper", "backtests"))
    return tmp_path / "run"


def rewrite_json(f, change):
    f.write_text(json.dumps(change(json.loads(f.read_text()))))


def rewrite_model(f, change):
    saved = torch.load(f, weights_only=True)
    change(saved)
    torch.save(saved, f)


def shrink_first_weight(saved):
    state = saved["state_dicts"][0]
    name = next(iter(state))
    state[name] = state[name][:1]


DAMAGE = {
    "predictions missing": (lambda r: (r / "predictions.parquet").unlink(), "predictions.parquet is damaged \\(it is missing\\)"),
    "predictions garbage": (lambda r: (r / "predictions.parquet").write_bytes(b"not parquet"), "predictions.parquet is damaged"),
    "config missing": (lambda r: (r / "config.yaml").unlink(), "config.yaml is damaged \\(it is missing\\)"),
    "config garbage": (lambda r: (r / "config.yaml").write_text("data: [unclosed\n"), "config.yaml is damaged"),
    "config a list": (lambda r: (r / "config.yaml").write_text("- 1\n- 2\n"), "config.yaml is damaged"),
    "run.json a list": (lambda r: (r / "run.json").write_text("[1, 2]"), "run.json is damaged \\(it holds a list"),
    "run.json without periods": (lambda r: rewrite_json(r / "run.json", lambda m: {k: v for k, v in m.items()
                                                                                   if k != "periods"}),
                                 "run.json is damaged \\(its periods are missing"),
    "run.json bad period": (lambda r: rewrite_json(r / "run.json", lambda m: {**m, "periods": {"ETH/BTC": {
        "train": ["yesterday-ish", "x"]}}}), "run.json is damaged \\(a period holds a time"),
    "model missing": (lambda r: (r / "model.pt").unlink(), "model.pt does not exist"),
    "model without info": (lambda r: rewrite_model(r / "model.pt", lambda s: s.pop("info")),
                           "model.pt is damaged \\(it lacks info\\)"),
    "model info incomplete": (lambda r: rewrite_model(r / "model.pt", lambda s: s["info"].pop("window")),
                              "model.pt is damaged \\(it lacks info.window\\)"),
    "model of the wrong shape": (lambda r: rewrite_model(r / "model.pt", shrink_first_weight),
                                 "model.pt is damaged \\(its weights do not fit the model it describes"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_run_folder_is_one_clear_error(run, case):
    damage, says = DAMAGE[case]
    damage(run)
    with pytest.raises(BotterError, match=says + ".*train it again"):
        inference.load(runs.open_run(run))
    # the commands say the same
    with pytest.raises(BotterError, match=says):
        backtest(compose("backtest", [f"run_dir={run}", "name=x", "data=sample", "data.symbols=[ETH/BTC]",
                                      "data.start=2018-01-20"]))
    if not case.startswith("model"):  # the run's own predictions need no model
        with pytest.raises(BotterError, match=says):
            backtest(compose("backtest", [f"run_dir={run}", "name=y"]))


def test_an_intact_copy_opens(run):
    opened = runs.open_run(run)
    assert len(opened.predictions()) > 0 and inference.load(opened).lookback == 39
