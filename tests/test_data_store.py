"""The candle store: paths inside the data folder, conflicts, damaged files, the writers' lock."""

import itertools
import subprocess
import sys
import textwrap
import threading

import pandas as pd
import pytest

from botter.atomic import atomic_path
from botter.data import load_candles
from botter.data.store import append_store, read_store, store_lock, store_path
from botter.errors import BotterError


def test_round_trip_and_idempotent_writes(tmp_path, eth):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    assert path == tmp_path / "binance" / "ETH_BTC-5m.parquet"
    assert append_store(path, eth.iloc[:100]).added == 100
    mtime = path.stat().st_mtime_ns
    written = append_store(path, eth.iloc[:100])  # the same candles again: nothing to write
    assert (written.added, written.replaced, written.kept) == (0, 0, 0)
    assert path.stat().st_mtime_ns == mtime
    assert append_store(path, eth.iloc[50:200]).added == 100  # overlap: nothing doubled
    got = load_candles("binance", "ETH/BTC", "5m", start="2018-01-10 05:00", end=1515560100000 + 150 * 300_000,
                       data_dir=tmp_path)
    pd.testing.assert_frame_equal(got, eth.iloc[1:150])


def poisoned(eth):
    bad = eth.iloc[10:20].copy()
    bad.iloc[3, bad.columns.get_loc("volume")] = 999.0
    bad.iloc[5, bad.columns.get_loc("close")] = 1e9
    return bad


def test_conflicts_fail_keep_or_replace(tmp_path, eth):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    append_store(path, poisoned(eth))
    before = path.read_bytes()
    with pytest.raises(BotterError, match=r"2 candles differ from the stored ones in .*ETH_BTC-5m.parquet, the first "
                                          r"at 2018-01-10 06:00 \(stored .*volume=999.0; new .*volume=939.849\d*\): "
                                          "set conflicts=replace"):
        append_store(path, eth.iloc[:30])
    assert path.read_bytes() == before  # nothing written, not even the new candles
    kept = append_store(path, eth.iloc[:30], conflicts="keep")
    assert (kept.added, kept.replaced, kept.kept) == (20, 0, 2)
    pd.testing.assert_frame_equal(kept.stored.drop(poisoned(eth).index), eth.iloc[:30].drop(poisoned(eth).index))
    replaced = append_store(path, eth.iloc[:30], conflicts="replace")
    assert (replaced.added, replaced.replaced, replaced.kept) == (0, 2, 0)
    pd.testing.assert_frame_equal(read_store(path), eth.iloc[:30])
    with pytest.raises(BotterError, match="conflicts='overwrite' is not one of: fail, keep, replace"):
        append_store(path, eth.iloc[:30], conflicts="overwrite")


@pytest.mark.parametrize("exchange", ["../../../tmp/x", "/tmp/x", "binanse", "local", "local-", "local-a/b"])
def test_the_store_stays_inside_the_data_folder(tmp_path, exchange):
    with pytest.raises(BotterError, match="not a ccxt exchange id.*local-<name>"):
        store_path(tmp_path, exchange, "ETH/BTC", "5m")


@pytest.mark.parametrize("symbol, timeframe", [("../x", "5m"), ("ETH/BTC", "5m/../../x"), ("..", "5m"), ("A B", "1h")])
def test_symbols_and_timeframes_make_plain_file_names(tmp_path, symbol, timeframe):
    with pytest.raises(BotterError, match="does not make a store file name|is not spelt BASE/QUOTE"):
        store_path(tmp_path, "binance", symbol, timeframe)


def test_local_names_hold_candles_from_no_exchange(tmp_path, eth):
    path = store_path(tmp_path, "local-kaggle", "BTC/USDT:USDT", "5m")
    assert path == tmp_path / "local-kaggle" / "BTC_USDT_USDT-5m.parquet"
    with pytest.raises(BotterError, match="botter-fetch source=csv path=<file.csv> exchange.id=local-kaggle"):
        load_candles("local-kaggle", "ETH/BTC", "5m", data_dir=tmp_path)


def damaged(path, eth):
    """Store files that are not candle stores, by what went wrong."""
    eth.iloc[:10].to_parquet(path)
    whole = path.read_bytes()
    return {
        "truncated": (whole[: len(whole) // 2], "is damaged"),
        "garbage": (b"not a parquet file at all", "is damaged"),
        "empty": (b"", "is damaged"),
        "date column": (eth.iloc[:10].reset_index(), r"is not a candle store \(it holds index None RangeIndex"),
        "no timezone": (eth.iloc[:10].tz_localize(None), "is not a candle store"),
        "other columns": (eth.iloc[:10, :4], "is not a candle store"),
    }


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "date column", "no timezone", "other columns"])
def test_a_damaged_store_file_is_named_with_the_way_out_and_left_alone(tmp_path, eth, kind):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    path.parent.mkdir(parents=True)
    content, message = damaged(path, eth)[kind]
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        content.to_parquet(path)
    before = path.read_bytes()
    for attempt in (lambda: read_store(path), lambda: append_store(path, eth.iloc[20:30], conflicts="replace")):
        with pytest.raises(BotterError, match=message) as e:
            attempt()
        assert f"the store file {path} " in str(e.value) and f"mv {path} {path}.bad" in str(e.value)
        assert "\n" not in str(e.value)
    assert path.read_bytes() == before


def test_a_killed_lock_holder_does_not_block_the_next_writer(tmp_path, eth):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from botter.data.store import store_lock
        with store_lock(Path({str(path)!r})):
            print("held", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(TimeoutError):
            store_lock(path).acquire(timeout=0)  # held by the other process
    finally:
        holder.kill()
        holder.wait()
    assert append_store(path, eth.iloc[:10]).added == 10


def test_a_reader_never_sees_half_a_file_while_a_writer_replaces_it(tmp_path, eth):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    frames = [eth.iloc[:100], eth]  # two sizes: a reader that took one's size and the other's bytes would fail
    append_store(path, frames[0])
    stop = threading.Event()

    def writer():
        for i in itertools.count():
            if stop.is_set():
                return
            with atomic_path(path) as tmp:
                frames[i % 2].to_parquet(tmp)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        lengths = {len(read_store(path)) for _ in range(300)}
    finally:
        stop.set()
        thread.join()
    assert lengths <= {100, 5760}
