"""The paper ledger's file: one writer at a time (the second is told who holds it, also through
botter-paper), a damaged or unwritable ledger as one line, names that stay inside the run's paper
folder."""

import multiprocessing
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time

import pytest
from paper_helpers import REPLAY, SYMBOL, paper_cli, settings
from test_paper import step

from botter.errors import BotterError
from botter.paper import session
from botter.paper.ledger import Ledger

META = {"symbols": [SYMBOL], "fee": 0.001}


def filled(path, candles: int = 1) -> None:
    """A ledger at `path` with `candles` candles recorded."""
    with Ledger(path, META) as ledger:
        for i in range(candles):
            ledger.record(step(300_000 * (i + 1)))


def in_use(pid: int) -> str:
    return (rf"the paper ledger .* is in use by another botter-paper \(pid {pid} on {re.escape(socket.gethostname())}, "
            rf"since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC\): stop that one first, or give this run another name=")


def hold(path, ready) -> None:
    with Ledger(path, META):
        ready.set()
        time.sleep(600)


def test_one_writer_at_a_time_and_a_killed_one_frees_the_ledger(tmp_path):
    path = tmp_path / "ledger.sqlite"
    filled(path)
    with Ledger(path, META):
        with pytest.raises(BotterError, match=in_use(os.getpid())):
            Ledger(path, META)
        with Ledger(path, readonly=True) as reader:  # reading is never refused
            assert reader.last_time() == 300_000
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=hold, args=(path, ready))
    child.start()
    assert ready.wait(60)
    with pytest.raises(BotterError, match=in_use(child.pid)):
        Ledger(path, META)
    child.kill()  # SIGKILL: the OS drops its lock
    child.join()
    assert child.exitcode == -signal.SIGKILL
    with Ledger(path, META) as ledger:
        ledger.record(step(600_000))


@pytest.mark.slow
def test_a_second_botter_paper_on_the_same_ledger_exits_2_naming_the_first(tiny_run):
    path = session.paper_dir(tiny_run, "busy") / "ledger.sqlite"
    with Ledger(path, META):  # this process is the first botter-paper
        proc = subprocess.run(paper_cli(tiny_run, "busy"), check=False, capture_output=True, text=True,
                              timeout=300)
    assert proc.returncode == 2
    assert re.fullmatch("error: " + in_use(os.getpid()) + "\n", proc.stderr), proc.stderr


def test_a_damaged_ledger_is_one_line(tmp_path):
    garbage = tmp_path / "garbage" / "ledger.sqlite"
    garbage.parent.mkdir()
    garbage.write_bytes(bytes(range(256)) * 16)
    truncated = tmp_path / "truncated" / "ledger.sqlite"
    filled(truncated, 2000)
    with open(truncated, "r+b") as f:
        f.truncate(truncated.stat().st_size // 2)
    for path in (garbage, truncated):
        for readonly in (False, True):
            with pytest.raises(BotterError, match=rf"^{re.escape(str(path))} is not a readable paper ledger \(.+\): "
                                                  "it is damaged; move it away .* or give another name=$"):
                Ledger(path, META, readonly=readonly)


def files_in(folder) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_reader_writes_nothing_and_leaves_migrating_to_a_writer(tmp_path):
    path = tmp_path / "ledger.sqlite"
    filled(path, 3)
    before = path.read_bytes()
    with Ledger(path, readonly=True) as reader:
        assert reader.last_time() == 900_000
    assert path.read_bytes() == before
    empty = tmp_path / "empty" / "ledger.sqlite"
    empty.parent.mkdir()
    empty.touch()
    old = tmp_path / "old" / "ledger.sqlite"
    old.parent.mkdir()
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE bars (time INTEGER PRIMARY KEY)")  # a version 1 ledger: tables, no version
    db.close()
    for path, what in [(empty, r"is an empty file \(0 bytes\), not a ledger"),
                       (old, "has schema version 1, older than 2: resume it with botter-paper .* to migrate it")]:
        before = files_in(path.parent)
        with pytest.raises(BotterError, match=rf"^the paper ledger {re.escape(str(path))} {what}"):
            Ledger(path, readonly=True)
        assert files_in(path.parent) == before


def try_to_write(path, out) -> None:
    """In a forked child: open `path` as a writer, as a user who is not root (root writes anything)."""
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)  # nobody
    try:
        Ledger(path, META).close()
        out.put("opened")
    except BotterError as e:
        out.put(str(e))


@pytest.mark.parametrize("what", ["file", "folder"])
def test_an_unwritable_ledger_is_one_line(what):
    folder = tempfile.mkdtemp()  # under /tmp: a user who is not root can reach it
    try:
        path = os.path.join(folder, "ledger.sqlite")
        filled(path)
        os.chmod(path, 0o444 if what == "file" else 0o666)
        os.chmod(path + ".lock", 0o666)
        os.chmod(folder, 0o777 if what == "file" else 0o555)
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        child = ctx.Process(target=try_to_write, args=(path, out))
        child.start()
        message = out.get(timeout=60)
        child.join()
        assert re.fullmatch(rf"cannot write the paper ledger {re.escape(path)} \(.+\): botter-paper needs to write "
                            rf"in {re.escape(folder)} .*; fix the permissions or give another name=", message), message
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder)


@pytest.mark.parametrize("name", ["../../x", "/tmp/elsewhere", "a/b", "..", ""])
def test_a_paper_name_stays_inside_the_runs_paper_folder(tiny_run, name):
    before = sorted(p for p in tiny_run.parent.rglob("*"))
    for call in (lambda: session.trade(tiny_run, name=name, feed=REPLAY, backtest=settings(tiny_run), progress=False),
                 lambda: session.status(tiny_run, name)):
        with pytest.raises(BotterError, match=rf"name='{re.escape(name)}' must be a plain folder name \(no / and no "
                                              r"\.\.\): it names the folder .*/paper/<name>/"):
            call()
    assert sorted(p for p in tiny_run.parent.rglob("*")) == before
