"""The paper run's guards: a candle in the fitted span stops a run, a resumed ledger's span counts for
the in-sample guard, linked folders and empty or altered ledgers are refused with one line, and a
resume that would leave candles out says so."""

import re
import sqlite3

import pandas as pd
import pytest
from paper_helpers import REPLAY, SYMBOL, settings, tables

from botter import inference, runs
from botter.data import load_sample
from botter.data.candles import to_ms
from botter.errors import BotterError
from botter.paper import loop, session
from botter.paper.feeds import Replay
from botter.paper.ledger import Ledger, Skip
from botter.paper.report import summary


def replay(run, name, **feed):
    return session.trade(run, name=name, feed={**REPLAY, **feed}, backtest=settings(run), progress=False,
                         allow_in_sample=feed.pop("allow", False))


def ledger_path(run, name):
    return session.paper_dir(run, name) / "ledger.sqlite"


def test_a_candle_before_the_model_is_out_of_sample_stops_the_run_before_it_is_recorded(tiny_run, tmp_path):
    eth = load_sample(SYMBOL).loc[:"2018-01-14T23:55"]
    start = runs.open_run(tiny_run).test_period(SYMBOL)[0]
    bt = settings(tiny_run)
    predictor = inference.load(runs.open_run(tiny_run))
    for name, oos_from in (("early", start + pd.Timedelta("1h")), ("on time", start)):  # as a live clock might say
        feed = Replay({SYMBOL: eth}, start=start, end=start + pd.Timedelta("2h"), progress=False)
        path = tmp_path / f"{name}.sqlite"
        with Ledger(path, {"symbols": [SYMBOL], **bt}) as ledger:
            traders = loop.resume(ledger, predictor, [SYMBOL], signals={k: bt[k] for k in session.SIGNAL_KEYS},
                                  **{k: bt[k] for k in session.COST_KEYS})
            if name == "early":
                with pytest.raises(BotterError, match=re.escape(f"hands on a {SYMBOL} candle of {start}, before the "
                                                                "end of the period the model was fitted on")):
                    loop.run(feed, traders, ledger, out_of_sample_from={SYMBOL: to_ms(oos_from)})
            else:
                loop.run(feed, traders, ledger, out_of_sample_from={SYMBOL: to_ms(oos_from)})
        times = tables(path)["bars"]["time"]
        assert times.empty if name == "early" else times.iloc[0] == start


def test_a_resumed_ledgers_in_sample_candles_count_for_the_guard(tiny_run):
    fitted = runs.open_run(tiny_run).fitted(SYMBOL)
    late = fitted[1] - pd.Timedelta("1h")
    replay(tiny_run, "was-in-sample", start=f"{late:%Y-%m-%dT%H:%M}", end=f"{fitted[1]:%Y-%m-%dT%H:%M}", allow=True)
    # the test period alone is out of sample, but the ledger it would continue holds fitted candles
    with pytest.raises(BotterError, match=f"this paper run would be in-sample: {SYMBOL} {late:%Y-%m-%d %H:%M} .."):
        replay(tiny_run, "was-in-sample")


@pytest.mark.parametrize("linked", ["paper", "paper/linked"])
def test_a_linked_paper_folder_is_refused(tiny_run, tmp_path, linked):
    copy = tmp_path / "run"
    copy.mkdir()
    for f in tiny_run.iterdir():
        if f.is_file():
            (copy / f.name).symlink_to(f)
    (copy / linked).parent.mkdir(parents=True, exist_ok=True)
    (copy / linked).symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    for call in (lambda: replay(copy, "linked"), lambda: session.status(copy, "linked")):
        with pytest.raises(BotterError, match="is a symbolic link: a paper run lives in its training run's own folder"):
            call()
    assert not (tmp_path / "elsewhere").exists()


@pytest.fixture(scope="module")
def traded(tiny_run, tmp_path_factory):
    """The bytes of a small ledger of the tiny run's test period."""
    start = runs.open_run(tiny_run).test_period(SYMBOL)[0]
    replay(tiny_run, "small", end=f"{start + pd.Timedelta('3h'):%Y-%m-%dT%H:%M}")
    return ledger_path(tiny_run, "small").read_bytes()


def altered(tiny_run, traded, name, sql=None):
    """The paper run `name` with a copy of `traded` altered by `sql` (on its meta table)."""
    path = ledger_path(tiny_run, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(traded)
    if sql:
        with sqlite3.connect(path) as db:
            db.execute(sql)
    return path


def test_altered_ledger_settings_are_refused(tiny_run, traded):
    path = altered(tiny_run, traded, "no-cash", "DELETE FROM meta WHERE key = 'cash'")
    with pytest.raises(BotterError, match="holds candles but not the settings they were traded under"):
        session.status(tiny_run, "no-cash")
    path = altered(tiny_run, traded, "no-meta", "DELETE FROM meta")
    with pytest.raises(BotterError, match="holds candles but not the settings .*its meta table is empty"):
        Ledger(path, {"symbols": [SYMBOL]})
    with pytest.raises(BotterError, match="its meta table is empty"):
        replay(tiny_run, "no-meta")
    path = altered(tiny_run, traded, "bad-json", "UPDATE meta SET value = '{not json' WHERE key = 'fee'")
    with Ledger(path, readonly=True) as ledger, pytest.raises(BotterError, match="has damaged settings \\(meta: "):
        ledger.meta()
    with pytest.raises(BotterError, match="has damaged settings"):
        session.status(tiny_run, "bad-json")


def test_a_ledger_of_skipped_candles_alone_has_no_status_yet(tiny_run):
    path = ledger_path(tiny_run, "skips")
    path.parent.mkdir(parents=True)
    with Ledger(path, {"symbols": [SYMBOL], "cash": 1.0}) as ledger:  # a live run whose first candle was bad
        ledger.record([], [Skip(SYMBOL, 1_516_000_000_000, "nan (a value is missing)", [1_516_000_000_000, None])])
    with pytest.raises(BotterError, match="has not traded a candle yet: run it first"):
        session.status(tiny_run, "skips")


def test_an_older_ledger_without_its_sample_shows_unknown(tiny_run, traded):
    path = altered(tiny_run, traded, "old", "DELETE FROM meta WHERE key = 'sample'")
    with Ledger(path, readonly=True) as ledger:
        assert (summary(ledger).loc["Sample"] == "unknown (an older ledger: resume it to check)").all()
    with Ledger(ledger_path(tiny_run, "small"), readonly=True) as ledger:
        assert (summary(ledger).loc["Sample"] == "out-of-sample").all()


def test_an_empty_ledger_file_is_refused_not_taken_for_a_new_one(tiny_run):
    path = altered(tiny_run, b"", "empty")
    for call in (lambda: replay(tiny_run, "empty"), lambda: session.status(tiny_run, "empty")):
        with pytest.raises(BotterError, match="is an empty file \\(0 bytes\\), not a ledger: .*delete it"):
            call()
    assert path.stat().st_size == 0 and sorted(p.name for p in path.parent.iterdir()) == ["ledger.sqlite"]


def test_a_resume_from_a_later_feed_start_says_which_candles_it_leaves_out(tiny_run, caplog):
    start = runs.open_run(tiny_run).test_period(SYMBOL)[0]
    replay(tiny_run, "later", end=f"{start + pd.Timedelta('1h'):%Y-%m-%dT%H:%M}")
    last = tables(ledger_path(tiny_run, "later"))["bars"]["time"].iloc[-1]
    later = last + pd.Timedelta("2h")
    with caplog.at_level("WARNING", logger="botter.paper"):
        replay(tiny_run, "later", start=f"{later:%Y-%m-%dT%H:%M}", end=f"{later + pd.Timedelta('1h'):%Y-%m-%dT%H:%M}")
    assert (f"{SYMBOL}: the ledger ends at {last}, the replay starts at feed.start={later}: the 23 candles between "
            "are not traded") in caplog.text
    times = tables(ledger_path(tiny_run, "later"))["bars"]["time"]
    assert (times > last).sum() and times[times > last].iloc[0] == later
    # going on where it ends says nothing
    caplog.clear()
    with caplog.at_level("WARNING", logger="botter.paper"):
        replay(tiny_run, "later", end=f"{later + pd.Timedelta('2h'):%Y-%m-%dT%H:%M}")
    assert "not traded" not in caplog.text


def test_a_live_run_on_an_unknown_exchange_is_refused_before_a_file_is_written(tiny_run):
    with pytest.raises(BotterError, match="exchange.id='binanse' is not a ccxt exchange id"):
        session.trade(tiny_run, name="live", feed={"name": "ccxt"}, backtest=settings(tiny_run), progress=False,
                      exchange={"id": "binanse"}, validate={})
    assert not (tiny_run / "paper" / "live").exists()
