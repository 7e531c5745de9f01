"""The in-sample guard (botter.runs.Run.in_sample): a model is out of sample for a symbol it was
fitted on only from the end of its fitted period on; every decision before it, before the training
span too, is in-sample. One rule for train and walk-forward runs."""

from pathlib import Path

import pandas as pd
import pytest

from botter.errors import BotterError
from botter.runs import Run


def _run(kind="train") -> Run:
    periods = {"ETH/BTC": {"train": ["2020-03-01 00:00:00+00:00", "2020-05-01 00:00:00+00:00"],
                           "val": ["2020-05-01 00:00:00+00:00", "2020-06-01 00:00:00+00:00"],
                           "test": ["2020-06-01 00:00:00+00:00", "2020-07-01 00:00:00+00:00"]}}
    return Run(Path("run"), {"kind": kind, "periods": periods, "symbols": ["ETH/BTC"]}, {})


def t(text):
    return pd.Timestamp(text, tz="UTC")


@pytest.mark.parametrize("kind", ["train", "walkforward"])
@pytest.mark.parametrize("first, last, inside", [
    ("2020-01-01", "2020-02-01", True),   # wholly before the training span: the model's own history
    ("2020-01-01", "2020-08-01", True),   # across it
    ("2020-04-01", "2020-04-02", True),   # inside it
    ("2020-05-31 23:55", "2020-07-01", True),  # one candle before the end of the validation span
    ("2020-06-01", "2020-07-01", False),  # from the end of the fitted period on
    ("2020-09-01", "2020-10-01", False),
])
def test_decisions_before_the_end_of_the_fitted_period_are_in_sample(kind, first, last, inside):
    run = _run(kind)
    assert run.out_of_sample_from("ETH/BTC") == t("2020-06-01")
    lines = run.in_sample({"ETH/BTC": (t(first), t(last))})
    assert bool(lines) == inside
    if inside:
        with pytest.raises(BotterError, match="would be in-sample: ETH/BTC .* starts before the end of the training "
                                              "period .* allow_in_sample=true"):
            run.guard({"ETH/BTC": (t(first), t(last))}, allow=False, what="this backtest")
        assert run.guard({"ETH/BTC": (t(first), t(last))}, allow=True, what="this backtest") is True
    else:
        assert run.guard({"ETH/BTC": (t(first), t(last))}, allow=False, what="this backtest") is False


def test_a_symbol_never_fitted_is_out_of_sample_throughout():
    run = _run()
    assert run.out_of_sample_from("LTC/BTC") is None
    assert run.in_sample({"LTC/BTC": (t("2020-04-01"), t("2020-04-02"))}) == []
