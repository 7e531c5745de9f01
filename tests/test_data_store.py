"""The candle store: paths inside the data folder, conflicts, damaged files, the writers' lock."""

import errno
import itertools
import os
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

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


@pytest.mark.parametrize("symbol, timeframe, message", [
    ("../x", "5m", "does not make a store file name"),
    ("ETH/BTC", "5m/../../x", "is not a timeframe like 1m"),
    ("..", "5m", "is not spelt BASE/QUOTE"),
    ("A B/C", "1h", "is not spelt BASE/QUOTE"),
    ("BTC", "1h", "'BTC' is not spelt BASE/QUOTE"),
    ("BTC/USDT", "0m", "'0m' is not a timeframe like 1m, 5m, 1h, 1d, 1w, 1M: a whole number above 0"),
    ("BTC/USDT", "-1h", "is not a timeframe"),
])
def test_symbols_and_timeframes_make_plain_file_names(tmp_path, symbol, timeframe, message):
    with pytest.raises(BotterError, match=message):
        store_path(tmp_path, "binance", symbol, timeframe)
    assert store_path(tmp_path, "binance", "BTC/USDT:USDT", "1M").name == "BTC_USDT_USDT-1M.parquet"


def test_local_names_hold_candles_from_no_exchange(tmp_path, eth):
    path = store_path(tmp_path, "local-kaggle", "BTC/USDT:USDT", "5m")
    assert path == tmp_path / "local-kaggle" / "BTC_USDT_USDT-5m.parquet"
    with pytest.raises(BotterError, match="botter-fetch source=csv path=<file.csv> exchange.id=local-kaggle"):
        load_candles("local-kaggle", "ETH/BTC", "5m", data_dir=tmp_path)


def flipped(path, eth):
    """The bytes of a store file of eth's first 200 candles with one bit flipped in a close price."""
    append_store(path, eth.iloc[:200])
    path.with_name(f".{path.name}.lock").unlink()
    whole = bytearray(path.read_bytes())
    at = whole.find(struct.pack("<d", eth.close.iloc[100]))
    assert at > 0  # the value is in a data page as it is (snappy leaves such bytes alone)
    whole[at + 3] ^= 0x10
    return bytes(whole)


def damaged(path, eth):
    """Store files that are not candle stores, by what went wrong."""
    eth.iloc[:10].to_parquet(path)
    whole = path.read_bytes()
    ten = eth.iloc[:10]
    return {
        "truncated": (whole[: len(whole) // 2], "is damaged"),
        "garbage": (b"not a parquet file at all", "is damaged"),
        "empty": (b"", "is damaged"),
        "bit flip": (flipped(path, eth), r"is damaged \(could not verify page integrity, CRC checksum"),
        "date column": (ten.reset_index(), r"is not a candle store \(it holds index None RangeIndex"),
        "no timezone": (ten.tz_localize(None), "is not a candle store"),
        "other columns": (ten.iloc[:, :4], "is not a candle store"),
        "int columns": (ten.astype({"volume": "int64"}), "volume int64; a store has .* float64 columns"),
        "NaT": (ten.set_axis(ten.index.insert(3, pd.NaT)[:10]), r"1 open times are missing \(NaT\)"),
        "repeated time": (ten.set_axis(ten.index[[0, 1, 1, 3, 4, 5, 6, 7, 8, 9]]), "open times repeat, like 2018-01-10 05:00"),
        "unsorted": (ten.iloc[[1, 0, *range(2, 10)]], "its open times are out of order"),
        "off the grid": (ten.set_axis(ten.index + pd.Timedelta("1s")), "10 open times are off the 5m grid"),
    }


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "bit flip", "date column", "no timezone",
                                  "other columns", "int columns", "NaT", "repeated time", "unsorted", "off the grid"])
def test_a_damaged_store_file_is_named_with_the_way_out_and_left_alone(tmp_path, eth, kind):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    path.parent.mkdir(parents=True)
    content, message = damaged(path, eth)[kind]
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        content.to_parquet(path)
    before = path.read_bytes()
    for attempt in (lambda: read_store(path), lambda: append_store(path, eth.iloc[20:30], conflicts="replace"),
                    lambda: load_candles("binance", "ETH/BTC", "5m", data_dir=tmp_path)):
        with pytest.raises(BotterError, match=message) as e:
            attempt()
        assert f"the store file {path} " in str(e.value) and f"mv {path} {path}.bad" in str(e.value)
        assert "\n" not in str(e.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # not even a lock file


def test_a_store_written_without_checksums_is_still_read(tmp_path, eth):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    path.parent.mkdir(parents=True)
    eth.iloc[:10].to_parquet(path)  # as botter wrote stores before it wrote page checksums
    pd.testing.assert_frame_equal(read_store(path), eth.iloc[:10])
    assert append_store(path, eth.iloc[:20]).added == 10


def test_candles_that_do_not_fit_the_store_are_refused(tmp_path, eth):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    with pytest.raises(BotterError, match="cannot store these candles in .*: 1 open times are off the 5m grid"):
        append_store(path, eth.iloc[:3].set_axis(eth.index[:3].insert(3, eth.index[2] + pd.Timedelta("1s"))[1:]))
    assert not path.parent.exists()


def test_nothing_to_write_takes_no_lock_and_writes_nothing(tmp_path, eth):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    append_store(path, eth.iloc[:10])
    path.with_name(f".{path.name}.lock").unlink()
    # A read-only store folder works for what changes nothing (root may write anyway: the lock file
    # that is not made shows it).
    assert append_store(path, eth.iloc[:10]).added == 0
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


@pytest.mark.parametrize("where", ["data_dir a file", "data_dir /dev/null", "data_dir /proc/self", "lock a folder",
                                   "disk full", "read-only"])
def test_a_store_that_cannot_be_written_is_one_line_and_left_alone(tmp_path, eth, where, monkeypatch):
    data_dir = tmp_path / "data"
    path = store_path(data_dir, "binance", "ETH/BTC", "5m")
    append_store(path, eth.iloc[:10])
    message = "cannot write the store"
    if where == "data_dir a file":
        (tmp_path / "file").write_text("x")
        path = store_path(tmp_path / "file", "binance", "ETH/BTC", "5m")
        message = r"cannot read the store .*file/binance/ETH_BTC-5m.parquet \(Not a directory: .*\): check that " \
                  "paths.data_dir is a folder you may read"
    elif where == "data_dir /dev/null":
        path = store_path("/dev/null", "binance", "ETH/BTC", "5m")
        message = r"cannot read the store /dev/null/binance/ETH_BTC-5m.parquet \(Not a directory"
    elif where == "data_dir /proc/self":
        path = store_path("/proc/self", "binance", "ETH/BTC", "5m")
    elif where == "lock a folder":
        path.with_name(f".{path.name}.lock").unlink()
        path.with_name(f".{path.name}.lock").mkdir()
        message = r"cannot write the store .*\(Is a directory"
    elif where == "disk full":
        def full(self, target, **kwargs):
            Path(target).write_bytes(b"PAR1")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

        monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
        message = r"cannot write the store .*\(No space left on device: .*: check that paths.data_dir is a folder you " \
                  "may write to, with free space, then run again"
    else:
        def read_only(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path.parent))

        monkeypatch.setattr("botter.atomic.tempfile.mkstemp", read_only)  # as for a user without write access
        message = r"cannot write the store .*\(Permission denied"
    before = {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}
    with pytest.raises(BotterError, match=message) as e:
        append_store(path, eth.iloc[:20])
    assert "\n" not in str(e.value)
    assert {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()} == before
    assert not list(data_dir.rglob("*.tmp"))


def test_temporary_files_of_a_killed_writer_are_removed_at_the_next_write(tmp_path, eth):
    path = store_path(tmp_path, "binance", "ETH/BTC", "5m")
    append_store(path, eth.iloc[:10])
    stale = [path.with_name(f".{path.name}.k1ll3d.tmp"), path.with_name(f".{path.name}.0ther.tmp")]
    for f in stale:
        f.write_bytes(b"PAR1 half a file")
    other = path.with_name(".LTC_BTC-5m.parquet.x.tmp")  # another store's: its own writer may be writing it
    other.write_bytes(b"")
    append_store(path, eth.iloc[:20])
    assert not any(f.exists() for f in stale) and other.exists()


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
