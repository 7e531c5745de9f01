"""botter-fetch end to end: as subprocesses against the local fake Binance server, and its task function."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from exchange_server import ExchangeServer
from test_data_csv import BAD_FILES, written
from test_data_fetch import klines

from botter.cli.fetch import fetch
from botter.config import compose
from botter.data import load_candles, load_sample, store_path
from botter.data.candles import to_ms
from botter.errors import BotterError

BOTTER_FETCH = str(Path(sys.executable).parent / "botter-fetch")
PUBLIC = {"/api/v3/exchangeInfo", "/api/v3/time", "/api/v3/klines"}


def botter_fetch(cwd, *overrides):
    return subprocess.run([BOTTER_FETCH, *overrides], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def started(cwd, *overrides):
    return subprocess.Popen([BOTTER_FETCH, *overrides], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finished(procs):
    """Wait for every process; (returncode, stdout, stderr) of each."""
    outputs = [p.communicate(timeout=300) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


def overrides(prefix, tree):
    """Hydra command-line overrides that add the nested dict `tree` under `prefix`."""
    if not isinstance(tree, dict):
        return [f"++{prefix}={json.dumps(tree)}"]
    return [o for key, sub in tree.items() for o in overrides(f"{prefix}.{key}", sub)]


def exchange_args(server, data_dir):
    return [f"paths.data_dir={data_dir}", "retry.base_delay=0.001", "progress=false",
            *overrides("exchange.ccxt_config", server.ccxt_config())]


@pytest.mark.slow
def test_fetch_fills_the_store_in_pages_then_adds_nothing(tmp_path, eth, monkeypatch):
    with ExchangeServer({"ETH/BTC": eth}, "5m") as server:
        args = ["symbol=ETH/BTC", "timeframe=5m", "since=2018-01-01", *exchange_args(server, tmp_path / "store")]
        args.remove("progress=false")
        first = botter_fetch(tmp_path, *args)
        assert first.returncode == 0, first.stderr
        assert first.stdout.splitlines()[:2] == [
            "received from binance ETH/BTC: 5760 candles of 5m from 2018-01-10 04:55 to 2018-01-30 04:50",
            "  no problems found",
        ]
        assert "ETH_BTC-5m.parquet: 5760 candles added, 0 replaced, 0 dropped; it holds 5760 candles of 5m" \
            in first.stdout
        assert "candle/s" not in first.stderr  # a pipe gets the result lines, no progress bar redraws
        assert len(klines(server)) == 6
        pd.testing.assert_frame_equal(load_candles("binance", "ETH/BTC", "5m", data_dir=tmp_path / "store"), eth)

        # A key in the environment is neither sent nor shown nor written.
        monkeypatch.setenv("BOTTER_BINANCE_API_KEY", "key-do-not-print")
        monkeypatch.setenv("BOTTER_BINANCE_SECRET", "secret-do-not-print")
        server.requests.clear()
        second = botter_fetch(tmp_path, *args)
        assert second.returncode == 0, second.stderr
        assert "received from binance ETH/BTC: 0 candles of 5m" in second.stdout
        assert "backfill: the exchange sent no ETH/BTC 5m candles from 2018-01-01 00:00 to 2018-01-10 04:55" \
            in second.stdout
        assert "0 candles added, 0 replaced, 0 dropped; it holds 5760 candles" in second.stdout
        assert len(klines(server)) == 1  # the days before the first candle, asked again
        assert {p.split("?")[0] for p in server.requests} == PUBLIC
        assert not any("signature=" in p or "do-not-print" in p for p in server.requests)
        assert "do-not-print" not in second.stdout + second.stderr
        assert not any(b"do-not-print" in f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())

        bad = botter_fetch(tmp_path, "symbol=NOPE/BTC", *args[1:])
        assert bad.returncode == 2
        assert bad.stderr.strip().splitlines() == [
            "error: unknown symbol 'NOPE/BTC' on binance: use a unified symbol like BTC/USDT"
        ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no outputs/ left behind


@pytest.mark.slow
def test_a_page_that_stays_truncated_fails_with_exit_2_and_keeps_what_came(tmp_path, eth):
    with ExchangeServer({"ETH/BTC": eth}, "5m") as server:
        server.fail_next(5, "truncated", after=4)  # markets, time, two pages, then the third five times
        run = botter_fetch(tmp_path, "symbol=ETH/BTC", "timeframe=5m", "since=2018-01-01",
                           *exchange_args(server, tmp_path))
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("error: the exchange sent a bad candle page 5 times (BadPage: an unreadable page of candles "
                           "from 2018-01-17 03:35")
    assert line.endswith("[the fetch stopped at 2018-01-17 03:35: 2000 candles added before it are stored; run the same "
                         "command again to fetch the rest]")
    pd.testing.assert_frame_equal(load_candles("binance", "ETH/BTC", "5m", data_dir=tmp_path), eth.iloc[:2000])


@pytest.mark.slow
def test_concurrent_imports_and_fetches_into_one_store_all_land(tmp_path, eth):
    """Eight CSV imports of disjoint ranges and two fetches of adjacent ranges, all at once."""
    data_dir = tmp_path / "data"
    with ExchangeServer({"ETH/BTC": eth}, "5m", page_limit=50) as server:
        procs = []
        for k in range(8):
            csv = tmp_path / f"part{k}.csv"
            written(csv, eth.iloc[100 * k : 100 * (k + 1)])
            procs.append(started(tmp_path, "source=csv", f"path={csv}", "symbol=ETH/BTC", f"paths.data_dir={data_dir}"))
        for since, until in ((800, 1400), (1400, 2000)):
            procs.append(started(tmp_path, "symbol=ETH/BTC", "timeframe=5m", f"since={to_ms(eth.index[since])}",
                                 f"until={to_ms(eth.index[until])}", *exchange_args(server, data_dir)))
        done = finished(procs)
    assert [rc for rc, _, _ in done] == [0] * 10, [err for rc, _, err in done if rc]
    assert all("100 candles added" in out for _, out, _ in done[:8])
    assert all("600 candles added" in out for _, out, _ in done[8:])
    pd.testing.assert_frame_equal(load_candles("binance", "ETH/BTC", "5m", data_dir=data_dir), eth.iloc[:2000])


@pytest.mark.slow
def test_every_bad_input_is_one_line_and_exit_2_and_damages_nothing(tmp_path, eth):
    data_dir = tmp_path / "data"
    damaged = store_path(data_dir, "binance", "XMR/BTC", "5m")
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"PAR1 half a file")
    good = tmp_path / "XMR_BTC.csv"
    written(good, eth.iloc[:20])
    runs = {}
    # Some of the unreadable files (tests/test_data_csv.py reads each): the console script says it in one line.
    for name in ("empty", "latin-1", "text for a number", "ragged row"):
        path = tmp_path / name.replace(" ", "_") / "ETH_BTC.csv"
        path.parent.mkdir()
        path.write_bytes(BAD_FILES[name][0])
        runs[name] = ("source=csv", f"path={path}", "timeframe=5m")
    runs["damaged store"] = ("source=csv", f"path={good}")
    runs["path out of the data folder"] = ("source=csv", f"path={good}", "exchange.id=../../../tmp/x")
    runs["unknown exchange"] = ("source=csv", f"path={good}", "exchange.id=binanse")
    runs["local name fetched"] = ("exchange.id=local-kaggle", "symbol=ETH/BTC", "timeframe=5m", "since=2018-01-01")
    done = dict(zip(runs, finished([started(tmp_path, *args, f"paths.data_dir={data_dir}") for args in runs.values()])))
    for name, (rc, out, err) in done.items():
        assert rc == 2, (name, out, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (name, err)
    assert "is damaged" in done["damaged store"][2] and f"mv {damaged} {damaged}.bad" in done["damaged store"][2]
    assert "local-<name> ids are for CSV imports only" in done["local name fetched"][2]
    # Nothing was written anywhere (a lock file an import took aside): the damaged file is as it was.
    assert sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.suffix != ".lock") == [
        "binance", "binance/XMR_BTC-5m.parquet"]
    assert damaged.read_bytes() == b"PAR1 half a file"
    assert not (tmp_path / "x").exists() and not Path("/tmp/x").exists()


def test_poison_is_reported_kept_out_and_can_be_repaired_by_a_corrected_import(tmp_path, eth, capsys):
    clean = eth.iloc[:50]
    poison = clean.copy()
    poison.iloc[10, 1] = poison.iloc[11, 3] = poison.iloc[12, 4] = np.inf  # high, close, volume
    poison.iloc[13, 4] = -5.0  # volume
    poison.iloc[14, 1] = poison.iloc[14, 2] / 2  # high < low
    bad, good = tmp_path / "bad" / "ETH_BTC.csv", tmp_path / "good" / "ETH_BTC.csv"
    bad.parent.mkdir(), good.parent.mkdir()
    assert ",inf," in written(bad, poison)
    written(good, clean)

    def botter_fetch(path, *more):
        fetch(compose("fetch", ["source=csv", f"path={path}", f"paths.data_dir={tmp_path / 'data'}", *more]))
        return capsys.readouterr().out

    out = botter_fetch(bad)
    assert f"received from {bad} as binance ETH/BTC: 50 candles of 5m from 2018-01-10 04:55 to 2018-01-10 09:00" in out
    assert "infinite (a value is infinite): 3 at 2018-01-10 05:45, 2018-01-10 05:50, 2018-01-10 05:55: dropped" in out
    assert "negative_volume (volume < 0): 1 at 2018-01-10 06:00: dropped" in out
    assert "high_below_low (high < low): 1 at 2018-01-10 06:05: dropped" in out
    assert "45 candles added, 0 replaced, 5 dropped; it holds 45 candles of 5m" in out
    assert "gaps: 1 (5 candles missing) at 2018-01-10 05:45 (5 missing)" in out
    pd.testing.assert_frame_equal(load_candles("binance", "ETH/BTC", "5m", data_dir=tmp_path / "data"),
                                  clean.drop(clean.index[10:15]))

    # Someone lets it in (every problem flagged), then imports the corrected file.
    botter_fetch(bad, "validate.infinite=flag", "validate.negative_volume=flag", "validate.high_below_low=flag")
    with pytest.raises(BotterError, match=r"5 candles differ from the stored ones .* the first at 2018-01-10 05:45 "
                                          r"\(stored .*high=inf.*\): set conflicts=replace"):
        botter_fetch(good)
    out = botter_fetch(good, "conflicts=replace")
    assert "0 candles added, 5 replaced, 0 dropped; it holds 50 candles of 5m" in out
    pd.testing.assert_frame_equal(load_candles("binance", "ETH/BTC", "5m", data_dir=tmp_path / "data"), clean)


def test_csv_import_with_date_column_and_capitalised_headers(tmp_path, capsys):
    xmr = load_sample("XMR/BTC")
    csv = tmp_path / "XMR_BTC.csv"
    assert written(csv, xmr).startswith("Date,Open,High,Low,Close,Volume\n2018-01-10 04:55,")
    fetch(compose("fetch", ["source=csv", f"path={csv}", f"paths.data_dir={tmp_path}", "exchange.id=local-mine"]))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"received from {csv} as local-mine XMR/BTC: 5758 candles of 5m from 2018-01-10 04:55 to "
                      "2018-01-30 04:50")
    assert out[1] == ("  gaps: 2 (2 candles missing) at 2018-01-27 14:40 (1 missing), 2018-01-27 22:50 (1 missing): "
                      "left as gaps")
    assert out[2].endswith("local-mine/XMR_BTC-5m.parquet: 5758 candles added, 0 replaced, 0 dropped; it holds 5758 "
                           "candles of 5m from 2018-01-10 04:55 to 2018-01-30 04:50")
    pd.testing.assert_frame_equal(load_candles("local-mine", "XMR/BTC", "5m", data_dir=tmp_path), xmr)
