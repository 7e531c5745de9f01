"""botter-dashboard: what it reads (complete runs, ledgers read-only beside a writer), what it draws
(the model's own chart, thinned long series), its command line, and the page in headless Chromium:
the status figures of `botter-paper mode=status`, and a new candle appearing by itself."""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from paper_helpers import REPLAY, SYMBOL, settings, tables

from botter.cli.paper import paper as _paper
from botter.config import compose
from botter.dashboard import data, figures
from botter.data import load_sample
from botter.errors import BotterError
from botter.paper import session
from botter.paper.ledger import Ledger
from botter.paper.report import curves, summary
from botter.plots import PIXELS
from botter.runs import open_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import synthetic  # scripts/ is not a package
from bench_dashboard import CHROMEDRIVER, CHROMIUM, chromium, paper_url, serving, status

NAME = "dashboard"  # the paper run of the tiny run that these tests replay


@pytest.fixture(scope="module")
def paper(tiny_run):
    """A replay of the tiny run's test period up to the candle before its last: (ledger path, the
    open time of the one candle left to trade)."""
    candles = load_sample(SYMBOL)
    test = open_run(tiny_run).test_period(SYMBOL)
    last = candles.index[candles.index.searchsorted(test[1]) + 1]  # the candle that fills the last decision
    before = candles.index[candles.index.get_loc(last) - 1]
    session.trade(tiny_run, name=NAME, feed={**REPLAY, "end": before}, backtest=settings(tiny_run), progress=False)
    return session.paper_dir(tiny_run, NAME) / "ledger.sqlite", last


def status_lines(run_dir, name: str, capsys) -> list[str]:
    """What `botter-paper mode=status` prints: the header and one line per figure, spaces collapsed."""
    capsys.readouterr()
    _paper(compose("paper", [f"run_dir={run_dir}", f"name={name}", "mode=status"]))
    return [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()
            if line.strip() and not line.startswith("equity curve:")]


def lines(rows) -> list[str]:
    """Table rows (lists of cells) as status_lines writes them."""
    return [" ".join(" ".join(row).split()) for row in rows]


def test_runs_are_the_complete_ones(tiny_run, tmp_path):
    def copy(to):
        shutil.copytree(tiny_run, tmp_path / to, ignore=shutil.ignore_patterns("paper", "last.pt", "best.pt"))
        return tmp_path / to

    copy("done")
    copy("sweep/0")  # a run below a folder: a -m sweep's
    meta = (copy("killed") / "run.json")
    meta.write_text(meta.read_text().replace('"status": "complete"', '"status": "running"'))
    (copy("damaged") / "run.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    runs, skipped = data.find_runs(tmp_path)
    assert list(runs) == ["done", "sweep/0"]
    assert [key for key, _ in skipped] == ["damaged", "killed"]
    figs = data.run_figures(runs["done"])
    assert figs["Accuracy"] == open_run(tiny_run).metrics["test"]["accuracy"]
    written = json.loads((tiny_run / "backtest" / "backtest.json").read_text())  # the test split's backtest
    assert figs["# Trades"] == written["portfolio"]["# Trades"] and figs["Return [%]"] == written["portfolio"]["Return [%]"]
    assert data.paper_names(runs["done"]) == []
    (tmp_path / "done" / "paper" / "p").mkdir(parents=True)
    (tmp_path / "done" / "paper" / "p" / "ledger.sqlite").touch()
    assert data.paper_names(runs["done"]) == ["p"]
    # What a page's URL names is looked up among these alone.
    assert data.locate(tmp_path, "done", "p")[1] == tmp_path / "done" / "paper" / "p" / "ledger.sqlite"
    for key, name, says in [("done", "q", "the run 'done' has no paper run 'q'"),
                            ("killed", "p", "no complete run 'killed'"), ("..", "p", "'..' is not under"),
                            ("done/paper/p", "p", "no complete run 'done/paper/p'")]:
        with pytest.raises(BotterError, match=re.escape(says)):
            data.locate(tmp_path / "walkforward" if key == ".." else tmp_path, key, name)


def test_the_index_lists_damaged_run_folders_and_shows_the_rest(tmp_path):
    from test_compare import damaged_runs

    from botter.dashboard.app import index_page

    damaged = damaged_runs(tmp_path)
    runs, skipped = data.find_runs(tmp_path)
    assert list(runs) == ["good"] and sorted(key for key, _ in skipped) == sorted(damaged)
    page = str(index_page(tmp_path))
    assert f"left out: {len(damaged)} folder(s)" in page and all(says in page for says in damaged.values())


def test_the_index_shows_a_ledger_it_cannot_read_as_one_line(tiny_run, tmp_path):
    from botter.dashboard.app import index_page

    shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("paper", "last.pt", "best.pt"))
    run = open_run(tmp_path / "run")
    nocash = data.ledger_path(run, "nocash")
    with Ledger(nocash, {"symbols": [SYMBOL]}) as ledger:  # settings without cash: altered by hand
        ledger.db.execute("INSERT INTO bars VALUES (0, ?, 1, 1, 1, 1, 1, 0, 0, 1, 1)", (SYMBOL,))
    empty = data.ledger_path(run, "empty")
    empty.parent.mkdir(parents=True)
    empty.touch()
    page = str(index_page(tmp_path))
    assert "no cash in its meta table" in page and "is an empty file (0 bytes), not a ledger" in page
    assert empty.stat().st_size == 0 and not Path(f"{empty}-wal").exists()  # nothing created beside it


def test_the_page_figures_are_the_status_figures(tiny_run, paper, capsys):
    path = paper[0]
    got = data.read_paper(path)
    with Ledger(path, readonly=True) as ledger:
        pd.testing.assert_frame_equal(got.summary, summary(ledger))
        pd.testing.assert_frame_equal(got.bars, ledger.table("bars"))
        pd.testing.assert_frame_equal(got.fills, ledger.table("fills"))
        for k, (equity, hold) in curves(ledger).items():
            pd.testing.assert_series_equal(got.curves[k][0], equity)
            pd.testing.assert_series_equal(got.curves[k][1], hold)
        newest = ledger.table("decisions").iloc[-1]
    assert got.symbols == [SYMBOL] and list(got.decisions) == [SYMBOL]
    assert got.decisions[SYMBOL].drop("time").equals(newest.drop("time"))
    assert lines(data.status_rows(got.summary)) == status_lines(tiny_run, NAME, capsys)


def test_one_account_over_two_symbols(tiny_run, capsys):
    pair = ["ETH/BTC", "LTC/BTC"]
    session.trade(tiny_run, name=f"{NAME}-pair", feed={**REPLAY, "start": "2018-01-16T00:00", "end": "2018-01-16T06:00"},
                  backtest=settings(tiny_run), symbols=pair, progress=False)
    got = data.read_paper(session.paper_dir(tiny_run, f"{NAME}-pair") / "ledger.sqlite")
    assert got.symbols == pair and list(got.decisions) == pair
    assert lines(data.status_rows(got.summary)) == status_lines(tiny_run, f"{NAME}-pair", capsys)
    assert [t.name for t in figures.equity(got.curves, got.bars).data][-2:] == ["ETH/BTC side", "LTC/BTC side"]
    run = open_run(tiny_run)
    for symbol in pair:
        image, line = data.chart(run, got, symbol)
        windows = data.predictor(run).windows({symbol: load_sample(symbol)})
        last = got.bars.loc[got.bars["symbol"] == symbol, "time"].iloc[-1]
        at = np.flatnonzero(pd.DatetimeIndex(windows.times, tz="UTC") == last)
        np.testing.assert_array_equal(image, windows.images(at)[0].numpy())
        assert f"at the close of {symbol} {last:%Y-%m-%d %H:%M} UTC" in line


def test_a_reader_never_blocks_the_writer_and_writes_nothing(tiny_run, tmp_path):
    name = f"{NAME}-writer"
    path = session.paper_dir(tiny_run, name) / "ledger.sqlite"
    candles = load_sample(SYMBOL)
    first = open_run(tiny_run).test_period(SYMBOL)[0]

    def trade(k: int) -> int:  # the test period up to its k-th candle, through the paper loop
        end = candles.index[candles.index.get_loc(first) + k]
        return session.trade(tiny_run, name=name, feed={**REPLAY, "end": end}, backtest=settings(tiny_run),
                             progress=False).at["Candles", "portfolio"]

    trade(20)
    with data.reading(path) as held:  # a page's read transaction, open while the paper loop writes
        n = len(held.table("bars"))
        assert trade(30) == n + 10
        assert len(held.table("bars")) == n  # its snapshot: the candles of one moment
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            held.db.execute("DELETE FROM bars")
    assert data.last_candle(path) == data.read_paper(path).last == int(tables(path)["bars"]["time"].iloc[-1].value // 10**6)
    # A writer that died leaves its last candles in the WAL file: read from there, and left there.
    with Ledger(path, readonly=True) as reader:  # open while the writer closes: the writer cannot checkpoint
        reader.states()
        trade(31)
    files = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (path, Path(f"{path}-wal"))}
    assert files[Path(f"{path}-wal")] != hashlib.sha256(b"").hexdigest()
    assert data.read_paper(path).summary.at["Candles", "portfolio"] == n + 11
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files} == files
    with pytest.raises(BotterError, match="no paper ledger at"):
        data.read_paper(tmp_path / "none.sqlite")
    assert not (tmp_path / "none.sqlite").exists()


def test_the_chart_is_the_one_the_model_read(tiny_run, paper):
    run = open_run(tiny_run)
    got = data.read_paper(paper[0])
    image, line = data.chart(run, got, SYMBOL)
    predictor = data.predictor(run)
    windows = predictor.windows({SYMBOL: load_sample(SYMBOL)})
    at = np.flatnonzero(pd.DatetimeIndex(windows.times, tz="UTC") == got.bars["time"].iloc[-1])
    np.testing.assert_array_equal(image, windows.images(at)[0].numpy())
    assert "the chart the model read at the close of" in line
    assert figures.png(image).startswith("data:image/png;base64,")
    # A gap in the candles it reads: no chart, as the loop asks the model nothing there.
    gap = replace(got, bars=got.bars.drop(got.bars.index[-3]))
    why = f"{SYMBOL} {got.bars['time'].iloc[-1]:%Y-%m-%d %H:%M} UTC: no chart (a gap in the {predictor.lookback} candles"
    assert data.chart(run, gap, SYMBOL) == (None, f"{why} it reads): the model was not asked")
    short = replace(got, bars=got.bars.tail(3))
    assert data.chart(run, short, SYMBOL)[0] is None and "the ledger holds 3" in data.chart(run, short, SYMBOL)[1]


def test_a_long_ledger_is_drawn_thinned(tmp_path):
    path = synthetic.paper_ledger(tmp_path / "ledger.sqlite", 10_000)
    got = data.read_paper(path)
    assert got.summary.at["Candles", "portfolio"] == 10_000
    fig = figures.equity(got.curves, got.bars)
    assert [len(t.x) for t in fig.data] == [2 * PIXELS + 1] * 5
    equity = fig.data[0].y
    assert equity.min() == got.bars["equity"].min() and equity.max() == got.bars["equity"].max()
    candles = figures.candles(got.bars, got.fills, 300)
    assert len(candles.data[0].x) == 300
    shown = got.fills[got.fills["time"] >= got.bars["time"].iloc[-300]]
    assert sum(len(t.x) for t in candles.data[1:]) == len(shown) > 0


def dashboard_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "botter-dashboard"
    return subprocess.run([str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def test_a_bad_runs_dir_or_a_busy_port_is_one_line(tmp_path):
    done = dashboard_cli(f"runs_dir={tmp_path / 'nothing'}", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: runs_dir={tmp_path / 'nothing'} is not a folder: give the folder your botter-train runs are in"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = dashboard_cli(f"runs_dir={tmp_path}", f"port={port}", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}") and "port=" in lines[0]


def test_ctrl_c_stops_it_cleanly(tmp_path):
    with serving(tmp_path) as served:
        served.proc.send_signal(signal.SIGINT)
    assert served.proc.returncode == 0, served.output
    assert "botter-dashboard: stopped" in served.output and "Traceback" not in served.output


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """Headless Chromium; the test skips without it, except in CI (CI=true), where .ci/run installs it."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        why = f"{' and '.join(missing)} not installed (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {why}: .ci/run installs them")
        pytest.skip(why)
    browser = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.quit()


def wait_for(driver, until, what: str, timeout: float = 120.0):
    """Wait until `until(driver)` is true; a guard against a hang (fails after `timeout` s), not a speed check."""
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=[WebDriverException]).until(until)
    except TimeoutException:
        pytest.fail(f"the page did not show {what} in {timeout:.0f} s")


def test_the_page_shows_the_status_and_follows_the_ledger(tiny_run, paper, driver, capsys, tmp_path):
    from selenium.webdriver.common.by import By

    path, last = paper
    n = len(tables(path)["bars"])  # of one symbol
    with serving(tiny_run.parent, "page.refresh_s=0.5") as served:
        driver.get(served.url)
        run = tiny_run.relative_to(tiny_run.parent).as_posix()
        wait_for(driver, lambda d: d.find_element(By.LINK_TEXT, NAME), f"a link to the paper run {NAME}").click()
        assert driver.current_url == paper_url(served.url, run, NAME)
        wait_for(driver, lambda d: status(d).get("Candles") == [str(n)] * 2, f"{n} candles")
        shown = lambda: lines([k, *v] for k, v in status(driver).items())
        assert shown() == status_lines(tiny_run, NAME, capsys)
        decision = tables(path)["decisions"].iloc[-1]
        probs = {row.find_element(By.TAG_NAME, "th").text: row.find_elements(By.TAG_NAME, "td")[0].text
                 for row in driver.find_elements(By.CSS_SELECTOR, "#probabilities tr")}
        assert probs == {"down": f"{decision['p_down']:.4f}", "up": f"{decision['p_up']:.4f}"}
        assert driver.find_element(By.ID, "model-chart").get_attribute("src").startswith("data:image/png;base64,")

        # One more candle through the paper loop, by another writer: the page shows it by itself.
        session.trade(tiny_run, name=NAME, feed={**REPLAY, "end": last}, backtest=settings(tiny_run), progress=False)
        wait_for(driver, lambda d: status(d).get("Candles") == [str(n + 1)] * 2, "the new candle")
        assert shown() == status_lines(tiny_run, NAME, capsys)
        newest = driver.execute_script("const x = document.querySelector('#candles .js-plotly-plot').data[0].x;"
                                       "return x[x.length - 1];")
        assert pd.Timestamp(newest) == last.tz_localize(None)
        assert f"newest candle {last:%Y-%m-%d %H:%M} UTC" in driver.find_element(By.ID, "updated").text
        # Everything the page loaded came from the dashboard itself: no CDN, no internet.
        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(served.url + "/") for url in loaded), loaded
        driver.save_screenshot(str(tmp_path / "dashboard.png"))
    assert served.proc.returncode == 0, served.output  # SIGTERM: a clean stop
    assert "botter-dashboard: stopped" in served.output
    png = (tmp_path / "dashboard.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000


@pytest.mark.parametrize("override, says", [
    ("port=8072.5", "port=8072.5 must be a whole number from 1 to 65535"),
    ("port=70000", "port=70000 must be a whole number from 1 to 65535"),
    ("host=null", "host=None must be a host name or address"),
    ("page.refresh_s=1e-9", "page.refresh_s=1e-09 must be >= 0.2 seconds"),
])
def test_bad_page_and_server_values_are_one_line(tmp_path, override, says):
    from botter.cli.dashboard import dashboard

    with pytest.raises(BotterError, match=f"^{re.escape(says)}"):
        dashboard(compose("dashboard", [f"runs_dir={tmp_path}", override]))
