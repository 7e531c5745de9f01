"""The run folder: the one module that writes and reads it.

A run folder (botter-train's, kind "train"; botter-walkforward's, kind "walkforward") holds:

    config.yaml          the resolved config it was made with
    run.json             what it is: kind, status (running / complete), symbols, timeframe, market
                         hours, the periods per symbol it was fitted on (train) and early-stopped
                         on (val), its test periods, how its predictions were computed, and the
                         command line's overrides it was made with (Hydra writes no .hydra/ here)
    model.pt             the model(s): plain tensors and numbers, loaded without running any code
                         (a walk-forward run's: its last fold's ensemble)
    predictions.parquet  time, symbol, p_<class>..., label (<NA> where unknown); a walk-forward
                         run's: every fold's test predictions (out of sample), with a fold column
    metrics.json         test metrics, baselines, their intervals and the backtest's key figures
    *.csv                a walk-forward run's tables: folds.csv (per fold), training.csv (per member and epoch)
    last.pt, best.pt     training checkpoints (resume)
    run.lock             held by the one process that writes the folder (`claim`)
    backtest/            the report botter-train wrote; backtests/<name>/ the ones botter-backtest did
    paper/<name>/        paper runs of its model

A run is complete once run.json says so, written last: a run that failed or was killed is never
taken for a finished one. Loading never executes code from the folder (`torch.load(...,
weights_only=True)`), so a run folder someone sent you is safe to open.
"""

import functools
import json
import os
import pickle
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
from filelock import FileLock
from filelock import Timeout as LockTimeout
from omegaconf import OmegaConf

from botter.atomic import atomic_path
from botter.data.candles import COLUMNS, to_ms
from botter.errors import BotterError, one_line

FORMAT = 1  # of model.pt and run.json; bumped when either changes shape
KINDS = ("train", "walkforward")
METRIC_SECTIONS = ("test", "baselines", "backtest", "intervals", "test_windows")  # mappings in metrics.json
INTERVALS = ("accuracy", "roc_auc", "sharpe")  # the metrics botter.evaluate gives intervals for
MODEL_INFO = ("render", "timeframe", "window", "horizon", "classes")  # what model.pt's info must say


_claimed: dict[Path, FileLock] = {}  # the run folders this process writes, and the locks that say so


def claim(path, *, kind: str = "train", resume: bool = False) -> None:
    """Make this process the one writer of the run folder `path` until `finish` or `fail` (or its
    end, however it ends: the OS drops the lock). Called before any slow work, so that a refusal
    comes at once. BotterError when another process writes the folder, or when it holds a run
    already (run.json) and this is not a resume of it (`resume`: botter-train trainer.resume=true):
    a finished run is never overwritten, nor two runs mixed in one folder."""
    path = Path(path)
    if path.resolve() in _claimed:
        return
    path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path / "run.lock")
    try:
        lock.acquire(timeout=0)
    except LockTimeout:
        raise BotterError(f"{path} is being written by another botter run: wait for it to end, or give this one "
                          "another folder (hydra.run.dir=...)") from None
    meta = path / "run.json"
    if meta.exists():
        try:
            held = _read_json(meta)
            status, held_kind = held.get("status"), held.get("kind")
        except (BotterError, AttributeError):  # damaged: still a run folder, not to be written over
            status = held_kind = None
        # Only a train run resumes into a train run's folder; a finished one only while nothing was
        # made from its model (backtests, paper runs), which would then describe a model gone.
        made = [p.name for p in (path / "backtests", path / "paper") if p.exists()]
        resumable = (kind == "train" and held_kind == "train" and status is not None
                     and not (status == "complete" and made))
        if not (resume and resumable):
            lock.release()
            what = " ".join(w for w in (status or "damaged", held_kind) if w)
            hint = (f", or resume it (botter-train hydra.run.dir={path} trainer.resume=true)"
                    if resumable and status != "complete" else "")
            also = f" (with {' and '.join(made)} made from its model)" if resume and status == "complete" and made else ""
            raise BotterError(f"{path} holds a {what} run already (run.json){also}: give this {kind} run a new folder "
                              f"(hydra.run.dir=...){hint}; a run folder is never overwritten")
    _claimed[path.resolve()] = lock


def abandon(path, *, keep_folder: bool = False) -> None:
    """Undo what a run refused before it began left in `path` (no run.json yet): this process's
    `claim` and its lock file, then the folder itself where nothing else is in it (unless
    `keep_folder`), so that no empty folder looks like a run. A folder holding a run stays as it is."""
    path = Path(path)
    if (path / "run.json").exists():
        return
    if path.resolve() in _claimed:
        _release(path)
        (path / "run.lock").unlink(missing_ok=True)
    if not keep_folder:
        try:
            path.rmdir()  # only an empty folder goes
        except OSError:
            pass


def _release(path) -> None:
    lock = _claimed.pop(Path(path).resolve(), None)
    if lock is not None:
        lock.release()


def start(path, config: dict, *, kind: str = "train", resume: bool = False, **meta) -> Path:
    """Begin a run in folder `path` (`claim`ed for it, here unless before): write config.yaml and
    run.json (status running)."""
    path = Path(path)
    claim(path, kind=kind, resume=resume)
    with atomic_path(path / "config.yaml") as tmp:
        tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    _write_meta(path, {"format": FORMAT, "kind": kind, "status": "running", "started": _now(), **meta})
    return path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_meta(path: Path, meta: dict) -> None:
    with atomic_path(path / "run.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2))


def save_model(path, *, state_dicts: list[dict], model_kwargs: dict, info: dict) -> None:
    """Write model.pt: the members' weights (one for a single model), how to build them, and what
    they read (info: render, window, horizon, classes, timeframe, hours, flat_threshold)."""
    save_checkpoint(Path(path) / "model.pt", {"format": FORMAT, "state_dicts": state_dicts,
                                              "model_kwargs": model_kwargs, "info": info})


def save_checkpoint(path, obj: dict) -> None:
    """torch.save `obj` (tensors, numbers, strings, lists and dicts only) atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path, map_location="cpu") -> dict:
    """A checkpoint or model file, loaded without executing code (weights_only=True).

    A crafted pickle, a truncated or garbage file: BotterError naming the file and what to do.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise BotterError(f"{path} does not exist: train it again (or restore it from a copy)") from None
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):  # it names a function or class to call: what a crafted file does
            raise BotterError(f"{path} holds more than plain tensors and numbers, so it was not loaded (loading it "
                              "could run code from it): use only run folders made by botter") from e
        raise BotterError(f"{path} is truncated or not a torch file (unreadable pickle): delete it and train "
                          "again (or restore it from a copy)") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise BotterError(f"{path} is truncated or not a torch file ({type(e).__name__}): delete it and "
                          "train again (or restore it from a copy)") from e


def finish(path, *, predictions: pd.DataFrame, metrics: dict, **meta) -> None:
    """Write predictions.parquet and metrics.json, then mark the run complete in run.json with
    `meta` (periods, symbols, timeframe, hours, precision, ...) added."""
    path = Path(path)
    with atomic_path(path / "predictions.parquet") as tmp:
        predictions.to_parquet(tmp, index=False)
    with atomic_path(path / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    done = {**read_meta(path), **meta, "status": "complete", "finished": _now()}
    _write_meta(path, done)
    _release(path)


def write_table(path, name: str, frame: pd.DataFrame) -> None:
    """Write the table `name` (like "folds.csv") of the run in folder `path`, atomically."""
    with atomic_path(Path(path) / name) as tmp:
        frame.to_csv(tmp)


def fail(path, error: BaseException) -> None:
    """Mark the run in `path` as failed (or interrupted), saying why: never taken for a finished one."""
    status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    _write_meta(Path(path), {**read_meta(path), "status": status, "error": f"{type(error).__name__}: {error}",
                             "finished": _now()})
    _release(path)


def plain_name(name, key: str, parent) -> str:
    """`name` where it is one plain folder name (no /, \\, . or ..), so that a folder made from it stays
    inside `parent`; else BotterError naming the option (`key`) to set."""
    name = str(name)
    if name in ("", ".", "..") or Path(name).name != name or "\\" in name or "/" in name:
        raise BotterError(f"{key}={name!r} must be a plain folder name (no / and no ..): it names the folder "
                          f"{parent}/<name>/")
    return name


def read_meta(path) -> dict:
    """run.json of the folder `path` ({} where there is none)."""
    f = Path(path) / "run.json"
    return _read_json(f) if f.exists() else {}


def _read_json(f: Path) -> dict:
    try:
        return json.loads(f.read_text())
    except FileNotFoundError:
        raise BotterError(f"{f} is missing: the run folder is damaged") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BotterError(f"{f} is not valid JSON ({e}): the run folder is damaged") from e


@dataclass
class Run:
    """A finished run folder, opened with `open_run`.

    meta: run.json. config: config.yaml (resolved). periods: {symbol: {"train": [start, end],
    "val": [...], "test": [...]}} with ISO times (UTC).
    """

    path: Path
    meta: dict
    config: dict

    @property
    def kind(self) -> str:
        """"train" or "walkforward"; BotterError where run.json says neither (a damaged folder)."""
        kind = self.meta.get("kind")
        if kind not in KINDS:
            raise BotterError(f"{self.path / 'run.json'} is damaged (its kind is {kind!r}, not one of "
                              f"{', '.join(KINDS)}): the run folder cannot be used")
        return kind

    @property
    def timeframe(self) -> str:
        return self.meta["timeframe"]

    @property
    def symbols(self) -> list[str]:
        return list(self.meta["symbols"])

    @property
    def periods(self) -> dict:
        return self.meta["periods"]

    def predictions(self) -> pd.DataFrame:
        """predictions.parquet: time (UTC), symbol, p_<class>..., label (<NA> where unknown).
        A file damaged since `open_run` checked it: BotterError naming it."""
        f = self.path / "predictions.parquet"
        try:
            return pd.read_parquet(f)
        except Exception as e:  # pyarrow raises several types for a damaged file (ArrowInvalid, OSError, ...)
            raise damaged(f, one_line(e)) from e

    @functools.cached_property
    def metrics(self) -> dict:
        """metrics.json: the test metrics, the baselines, their intervals and the backtest's key figures.
        BotterError where it is not as botter writes it (its sections mappings, each interval one).
        Read once per Run: a listing checks it (`find`), then shows it."""
        f = self.path / "metrics.json"
        m = _read_json(f)
        wrong = "it is not a mapping" if not isinstance(m, dict) else next(
            (f"its {k} is not a mapping" for k in METRIC_SECTIONS if k in m and not isinstance(m[k], dict)), None)
        if wrong is None and any(not isinstance(m.get("intervals", {}).get(k, {}), dict) for k in INTERVALS):
            wrong = "an interval is not a mapping"
        if wrong:
            raise BotterError(f"{f} is damaged ({wrong}): the run folder cannot be used")
        return m

    def model(self) -> dict:
        """model.pt: {"state_dicts": [...], "model_kwargs": {...}, "info": {...}} (safe to load);
        BotterError naming the file where it lacks one of them."""
        f = self.path / "model.pt"
        saved = load_checkpoint(f)
        shapes = {"state_dicts": list, "model_kwargs": dict, "info": dict}
        wrong = [k for k, kind in shapes.items() if not isinstance(saved, dict) or not isinstance(saved.get(k), kind)]
        if not wrong and not saved["state_dicts"]:
            wrong = ["state_dicts (empty)"]
        wrong += [f"info.{k}" for k in MODEL_INFO if not wrong and k not in saved["info"]]
        if wrong:
            raise damaged(f, f"it lacks {', '.join(wrong)}")
        return saved

    def fitted(self, symbol: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """The period of `symbol` the model was fitted and early-stopped on (from its first train
        decision to the last candle its validation labels read), or None for a symbol it never saw.
        A walk-forward run's: its last fold's (the fold whose ensemble is model.pt)."""
        spans = self.periods.get(symbol, {})
        seen = [spans[k] for k in ("train", "val") if k in spans]
        if not seen:
            return None
        return pd.Timestamp(min(s[0] for s in seen)), pd.Timestamp(max(s[1] for s in seen))

    def out_of_sample_from(self, symbol: str) -> pd.Timestamp | None:
        """The first decision time of `symbol` at which the model is out of sample: the end of its
        fitted period (its last validation label reads that candle's open, known at a decision
        there). Every decision before it is in-sample, those before the fitted period too: the
        model was chosen for how it did there, and a walk-forward model's earlier folds' training
        was its own history. None: a symbol it never saw (out of sample throughout). The one rule
        that `in_sample` and a paper run's live check both apply."""
        span = self.fitted(symbol)
        return None if span is None else span[1]

    def test_period(self, symbol: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """First and last test decision time of `symbol`, or None."""
        span = self.periods.get(symbol, {}).get("test")
        return None if span is None else (pd.Timestamp(span[0]), pd.Timestamp(span[1]))

    def twins(self, candles: dict, data_dir=None) -> dict[str, str]:
        """{symbol of `candles`: the training symbol it is} for each one whose candles equal, at the
        same open time, a candle the model was fitted or early-stopped on, whatever it is called
        (planted data under another name, the same market spelt or stored twice). {} where the run's
        own candles cannot be loaded (a store that is not here)."""
        from botter.data import load_config

        if set(candles) <= set(self.symbols):  # training symbols under their own names: checked by name
            return {}
        try:
            own = load_config(self.config["data"], data_dir)
        except BotterError:
            return {}
        out = {}
        for symbol, df in candles.items():
            for trained, seen in own.items():
                span = self.fitted(trained)
                if span is None:
                    continue
                seen = seen.loc[span[0] : span[1]]
                common = seen.index.intersection(df.index)
                same = seen.loc[common, COLUMNS].to_numpy() == df.loc[common, COLUMNS].to_numpy()
                if same.all(axis=1).any():
                    out[symbol] = trained
                    break
        return out

    def in_sample(self, decisions: dict, twins: dict | None = None) -> list[str]:
        """Which of `decisions` ({symbol: (first, last) decision time}) start before the model is out
        of sample (`out_of_sample_from`), by name or through `twins` ({symbol: training symbol it
        is}): one line per such span (symbols alike share one), empty when all are out of sample."""
        twins = twins or {}
        early = {}
        for symbol, (first, last) in decisions.items():
            first, last = (pd.Timestamp(to_ms(t), unit="ms", tz="UTC") for t in (first, last))
            for trained in dict.fromkeys([symbol, twins.get(symbol, symbol)]):
                start = self.out_of_sample_from(trained)
                if start is not None and first < start:
                    name = symbol if trained == symbol else f"{symbol} (the candles of {trained})"
                    early.setdefault((first, last, *self.fitted(trained)), []).append(name)
                    break
        return [f"{', '.join(symbols)} {first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} starts before the end of the "
                f"training period {a:%Y-%m-%d %H:%M} .. {b:%Y-%m-%d %H:%M} (out of sample from {b:%Y-%m-%d %H:%M} on)"
                for (first, last, a, b), symbols in early.items()]

    def guard(self, decisions: dict, *, allow: bool, what: str, candles: dict | None = None, data_dir=None) -> bool:
        """Refuse `what` (a backtest, a paper run) over `decisions` that start before the model is out
        of sample (`in_sample`) unless `allow`; returns whether it is in-sample. With `candles` (those
        decided on), a symbol whose candles are the training candles under another name counts as
        that one (`twins`)."""
        lines = self.in_sample(decisions, self.twins(candles, data_dir) if candles else None)
        if lines and not allow:
            raise BotterError(f"{what} would be in-sample: {'; '.join(lines)}. Start it at the end of the training "
                              "period or later, or pass allow_in_sample=true to run it anyway, "
                              "marked IN-SAMPLE")
        return bool(lines)


def open_run(path) -> Run:
    """Open a finished run folder (a botter-train or botter-walkforward output); BotterError, with
    what to do, for anything else."""
    path = Path(path)
    if not path.is_dir():
        raise BotterError(f"{path} is not a folder: pass run_dir=<the folder of a botter-train run>")
    meta = read_meta(path)
    if not isinstance(meta, dict):
        raise damaged(path / "run.json", f"it holds a {type(meta).__name__}, not a mapping")
    if not meta:
        raise BotterError(f"{path} is not a run folder of this botter version (it has no run.json): pass the "
                          "folder a botter-train run printed, or train again")
    if meta.get("status") != "complete":
        fix = (f"resume it (botter-train hydra.run.dir={path} trainer.resume=true) or use another run"
               if meta.get("kind", "train") == "train" else "use another run (a walk-forward does not resume: "
               "start it again in a new folder)")
        raise BotterError(f"{path} is a run that did not finish (status {meta.get('status')!r}): {fix}")
    if meta.get("format") != FORMAT:
        raise BotterError(f"{path} was written in run format {meta.get('format')}, this botter reads {FORMAT}: "
                          "train it again")
    _check_meta(path / "run.json", meta)
    _check_predictions(path / "predictions.parquet")  # model.pt is checked where it is read (Run.model)
    f = path / "config.yaml"
    try:
        config = OmegaConf.to_container(OmegaConf.load(f), resolve=True)
    except FileNotFoundError:
        raise damaged(f, "it is missing") from None
    except Exception as e:  # a YAML error, a list, an interpolation that does not resolve: not the file train wrote
        raise damaged(f, one_line(e)) from e
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        raise damaged(f, "it holds no data config")
    return Run(path, meta, config)


def _check_predictions(f: Path) -> None:
    """predictions.parquet is a Parquet file with the columns the commands read (its footer only: cheap)."""
    import pyarrow.parquet as pq

    if not f.is_file():
        raise damaged(f, "it is missing")
    try:
        columns = pq.read_schema(f).names
    except Exception as e:  # ArrowInvalid, OSError, ... for a file that is not Parquet
        raise damaged(f, one_line(e)) from e
    missing = [c for c in ("time", "symbol") if c not in columns]
    if missing:
        raise damaged(f, f"it lacks the columns {', '.join(missing)}")


def damaged(f: Path, why: str) -> BotterError:
    """The error for a file of a run folder that is not as botter wrote it."""
    return BotterError(f"{f} is damaged ({why}): the run folder cannot be used; train it again (or restore the "
                       "folder from a copy)")


def _check_meta(f: Path, meta: dict) -> None:
    """run.json has what the commands read: symbols, timeframe and periods {symbol: {split: [start, end]}}."""
    periods = meta.get("periods")
    if not isinstance(meta.get("symbols"), list) or not isinstance(meta.get("timeframe"), str):
        raise damaged(f, "it lacks symbols or timeframe")
    if not isinstance(periods, dict) or not all(
            isinstance(spans, dict) and all(isinstance(v, list) and len(v) == 2 for v in spans.values())
            for spans in periods.values()):
        raise damaged(f, "its periods are missing or not {symbol: {split: [start, end]}}")
    try:
        for spans in periods.values():
            for v in spans.values():
                pd.Timestamp(v[0]), pd.Timestamp(v[1])
    except (TypeError, ValueError) as e:
        raise damaged(f, f"a period holds a time that is not one ({e})") from e


def find(path) -> tuple[list[Run], list[tuple[Path, str]]]:
    """The complete runs in the folders under `path` (itself included), and the folders skipped with
    why: run folders that did not finish or cannot be read (their kind and metrics.json included),
    and Hydra job folders without a run. A run folder's own sub-folders (backtests, paper runs) are
    not searched. The one search of botter-runs and botter-dashboard."""
    found, skipped = [], []
    for folder, subfolders, files in os.walk(path):
        subfolders.sort()
        if "run.json" not in files and ".hydra" not in subfolders:
            continue
        subfolders.clear()
        try:
            run = open_run(folder)
            _ = run.kind, run.metrics  # what every listing reads: a damaged one is skipped here, with why
            found.append(run)
        except BotterError as e:
            skipped.append((Path(folder), str(e)))
    return found, skipped
