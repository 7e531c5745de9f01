"""A run folder has one writer (botter.runs.claim): a second process is refused at once, and a
folder that holds a run already is never written over, except by a resume of that run."""

import json
import multiprocessing

import pytest

from botter import runs
from botter.errors import BotterError


def _write(path, ready, done) -> None:
    runs.start(path, {"a": 1}, kind="walkforward")
    ready.set()
    done.wait(60)


def test_a_second_writer_is_refused_while_the_first_writes(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_write, args=(tmp_path, ready, done))
    child.start()
    try:
        assert ready.wait(60)
        with pytest.raises(BotterError, match="is being written by another botter run: wait for it to end, or give "
                                              r"this one another folder \(hydra.run.dir=...\)$"):
            runs.start(tmp_path, {"b": 2}, kind="walkforward")
        assert json.loads((tmp_path / "run.json").read_text())["kind"] == "walkforward"
        assert "a: 1" in (tmp_path / "config.yaml").read_text()
    finally:
        done.set()
        child.join()


def _finished(path, kind):
    import pandas as pd

    runs.start(path, {"a": 1}, kind=kind)
    runs.finish(path, predictions=pd.DataFrame({"time": [], "symbol": []}), metrics={}, symbols=[], timeframe="5m",
                periods={})


@pytest.mark.parametrize("kind", ["train", "walkforward"])
def test_a_folder_with_a_run_is_never_written_over(tmp_path, kind):
    _finished(tmp_path / "done", kind)
    before = {p.name: p.read_bytes() for p in (tmp_path / "done").iterdir()}
    with pytest.raises(BotterError, match=rf"holds a complete {kind} run already \(run.json\): give this {kind} run a "
                                          r"new folder \(hydra.run.dir=...\); a run folder is never overwritten$"):
        runs.start(tmp_path / "done", {"b": 2}, kind=kind)
    # Nor by a resume of another kind, nor of a finished run whose model backtests or paper runs were
    # made from (they would describe a model gone).
    (tmp_path / "done" / "paper").mkdir()
    before = {p.name: p.read_bytes() for p in (tmp_path / "done").iterdir() if p.is_file()}
    for other in ("train", "walkforward"):
        with pytest.raises(BotterError, match=rf"holds a complete {kind} run already .* never overwritten$"):
            runs.start(tmp_path / "done", {"b": 2}, kind=other, resume=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "done").iterdir() if p.is_file()} == before
    # One that failed: a train run is resumed into it, a walk-forward (no resume) is not.
    runs.start(tmp_path / "failed", {"a": 1}, kind=kind)
    runs.fail(tmp_path / "failed", RuntimeError("boom"))
    hint = r"or resume it \(botter-train" if kind == "train" else "a run folder is never overwritten"
    with pytest.raises(BotterError, match=rf"holds a failed {kind} run already .*{hint}"):
        runs.start(tmp_path / "failed", {"b": 2}, kind=kind)
    with pytest.raises(BotterError, match="did not finish" + (r".*trainer.resume=true" if kind == "train" else
                                                              r" \(status .failed.\): use another run .* start it again in a new folder")):
        runs.open_run(tmp_path / "failed")
    if kind == "train":
        runs.start(tmp_path / "failed", {"b": 2}, kind=kind, resume=True)
        assert json.loads((tmp_path / "failed" / "run.json").read_text())["status"] == "running"
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "run.json").write_text("1")
    with pytest.raises(BotterError, match="holds a damaged run already"):
        runs.start(tmp_path / "damaged", {"b": 2}, kind=kind)
