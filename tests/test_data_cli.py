"""botter-fetch end to end, as a subprocess, against the local fake Binance server."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from exchange_server import ExchangeServer
from test_data_fetch import klines

from botter.data import load_candles, load_sample

BOTTER_FETCH = str(Path(sys.executable).parent / "botter-fetch")


def botter_fetch(cwd, *overrides):
    return subprocess.run([BOTTER_FETCH, *overrides], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def overrides(prefix, tree):
    """Hydra command-line overrides that add the nested dict `tree` under `prefix`."""
    if not isinstance(tree, dict):
        return [f"++{prefix}={json.dumps(tree)}"]
    return [o for key, sub in tree.items() for o in overrides(f"{prefix}.{key}", sub)]


@pytest.mark.slow
def test_fetch_fills_the_store_in_pages_then_adds_nothing(tmp_path, eth, monkeypatch):
    with ExchangeServer({"ETH/BTC": eth}, "5m") as server:
        args = [
            "symbol=ETH/BTC",
            "timeframe=5m",
            "since=2018-01-01",
            f"paths.data_dir={tmp_path / 'store'}",
            "retry.base_delay=0.001",
            *overrides("exchange.ccxt_config", server.ccxt_config()),
        ]
        first = botter_fetch(tmp_path, *args)
        assert first.returncode == 0, first.stderr
        assert "5760 candles added, 0 dropped, 5760 stored" in first.stdout
        assert "no problems found" in first.stdout
        assert "candle" in first.stderr  # the progress bar
        assert len(klines(server)) == 6
        pd.testing.assert_frame_equal(load_candles("binance", "ETH/BTC", "5m", data_dir=tmp_path / "store"), eth)

        # A key in the environment is used but never shown or written.
        monkeypatch.setenv("BOTTER_BINANCE_API_KEY", "key-do-not-print")
        monkeypatch.setenv("BOTTER_BINANCE_SECRET", "secret-do-not-print")
        server.requests.clear()
        second = botter_fetch(tmp_path, *args)
        assert second.returncode == 0, second.stderr
        assert "0 candles added, 0 dropped, 5760 stored" in second.stdout
        assert klines(server) == []
        assert "do-not-print" not in second.stdout + second.stderr
        assert not any(b"do-not-print" in f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())

        bad = botter_fetch(tmp_path, "symbol=NOPE/BTC", *args[1:])
        assert bad.returncode == 2
        assert bad.stderr.strip().splitlines() == [
            "error: unknown symbol 'NOPE/BTC' on binance: use a unified symbol like BTC/USDT"
        ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no outputs/ left behind


@pytest.mark.slow
def test_csv_import_with_date_column_and_capitalised_headers(tmp_path):
    xmr = load_sample("XMR/BTC")
    csv = tmp_path / "XMR_BTC.csv"
    table = xmr.rename(columns=str.capitalize).reset_index()
    table.insert(0, "Date", table.pop("time").dt.strftime("%Y-%m-%d %H:%M"))
    table.to_csv(csv, index=False)
    assert csv.read_text().startswith("Date,Open,High,Low,Close,Volume\n2018-01-10 04:55,")

    run = botter_fetch(tmp_path, "source=csv", f"path={csv}", f"paths.data_dir={tmp_path}")
    assert run.returncode == 0, run.stderr
    assert "as XMR/BTC 5m: 5758 candles of 5m" in run.stdout
    assert "gaps: 2 (2 candles missing) at 2018-01-27 14:40 (1 missing), 2018-01-27 22:50 (1 missing)" in run.stdout
    assert "5758 candles added" in run.stdout
    pd.testing.assert_frame_equal(load_candles("binance", "XMR/BTC", "5m", data_dir=tmp_path), xmr)
