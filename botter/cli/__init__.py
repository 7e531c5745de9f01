"""The console scripts: thin Hydra apps that wire the stages together, one module per command.

Each module has `main()` (the console script) and a public function named after the command that
takes the composed config (what the tests call). Every value can be overridden on the command line
(`botter-train trainer.lr=3e-4`). Bad input (command line, config, data, symbol, network) prints one
line and exits with code 2.
"""

import difflib
import errno
import itertools
import os
import re
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigIndexError,
    ConfigKeyError,
    InterpolationResolutionError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from botter import config
from botter.errors import BotterError


def app(config_name: str, task) -> None:
    """Run `task(cfg)` as the Hydra app of `configs/<config_name>.yaml`.

    The command line is checked first (`check_command_line`), so that a wrong flag, override or
    value prints one line before any output folder exists. A BotterError from the task, or a `???`
    value it reads, or a folder it cannot write (OSError: no permission, a read-only or full disk), prints
    one line too; all of them exit with code 2. A reader that closes the pipe of our output
    (`| head`) ends the command quietly. Any other exception from the task is a bug and keeps its
    traceback.
    """
    started = False

    @hydra.main(config_path="pkg://botter.configs", config_name=config_name, version_base="1.3")
    def main(cfg: DictConfig):
        nonlocal started
        started = True
        try:
            return task(cfg)
        except BotterError as e:
            _drop_empty_output()
            _exit(e)
        except (MissingMandatoryValue, InterpolationResolutionError) as e:
            _drop_empty_output()
            _exit(_unresolved(e))
        except BrokenPipeError:
            _closed_pipe()
        except OSError as e:
            if e.errno not in UNWRITABLE:
                raise
            _drop_empty_output()
            _exit(f"cannot write {e.filename or 'a file'} ({e.strerror}): make its folder writable (or free some "
                  "space), or choose another folder")

    try:
        check_command_line(os.path.basename(sys.argv[0]), config_name, sys.argv[1:])
    except BotterError as e:
        _exit(e)
    try:
        main()
        sys.stdout.flush()  # a pipe holds the output in a buffer: a closed one shows here, not in a print
    except BrokenPipeError:
        _closed_pipe()
    except SystemExit as e:
        # Hydra prints its own message and exits 1 for a command line it cannot compose (left to it
        # with HYDRA_FULL_ERROR=1, or with configs from --config-dir): that is bad input too.
        if e.code == 1 and not started:
            sys.exit(2)
        raise


# Errors of a folder the user pointed a command at, not bugs: no permission, a read-only or full disk.
UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EEXIST, errno.ENOTDIR}


def _drop_empty_output() -> None:
    """Remove the run folder Hydra made for a command refused before its run began (botter.runs.abandon):
    a folder under outputs/ with nothing in it would look like a run."""
    from hydra.core.hydra_config import HydraConfig

    from botter import runs

    if not HydraConfig.initialized():
        return
    out, here = Path(HydraConfig.get().runtime.output_dir).resolve(), Path.cwd().resolve()
    # The folder the user works in (hydra.run.dir: ., or pointed at it) stays, emptied of our lock.
    runs.abandon(out, keep_folder=out == here or out in here.parents)


def _closed_pipe() -> None:
    """The reader of our output went away (`botter-runs | head`): stop quietly, as Unix tools do.
    stdout goes to /dev/null first, so that Python's own flush at exit does not fail on the pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)  # 128 + SIGPIPE: what a shell reports for a command stopped by a closed pipe


def _exit(message) -> None:
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:  # a progress bar left mid-line would run into the message: clear it first
        for bar in list(getattr(tqdm.tqdm, "_instances", ())):
            if not bar.disable:
                bar.clear()  # close() alone skips a bar shown by refresh() before its delay
                bar.close()
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _unresolved(e) -> str:
    """One line for a `???` value a task reads, directly or through an interpolation, or for an
    interpolation whose target an override removed."""
    first = str(e).splitlines()[0]
    if "Missing mandatory value: " in first:
        key = first.rsplit(": ", 1)[-1]
        return f"{key} has no value: give it on the command line ({key}=...)"
    return f"{e.full_key}: {first}: give {e.full_key}= a value, or keep what it refers to"


def check_command_line(script: str, config_name: str, argv: list[str]) -> None:
    """Raise BotterError, one line that names the key or option and the fix, for a command line of
    `script` (the console script of configs/<config_name>.yaml) that Hydra would refuse or whose
    values do not fit the config.

    Composed as Hydra composes it (every job of a `-m` sweep), before anything runs. Checked:
    Hydra's flags, the override syntax, config group options, keys (naming the nearest existing
    one), a `+key` that adds a key no code reads (an empty mapping such as exchange.ccxt_config
    takes any), and each value against the value it replaces: true/false for a bool, a number for
    a number, a list (of the same kind of items) for a list, a mapping for a mapping, a single value
    for a string. A null default takes anything and null goes anywhere: the code that reads a
    value checks what null and its range mean. With HYDRA_FULL_ERROR=1, Hydra reports its own
    errors in full instead.
    """
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    args = _parse_args(script, argv)
    if args.help or args.hydra_help or args.shell_completion or args.info or args.config_path or args.config_dir \
            or args.experimental_rerun:
        return  # Hydra's own modes, or configs from elsewhere: Hydra checks those
    name = args.config_name or config_name
    with initialize_config_module(config.CONFIG_MODULE, version_base="1.3"):
        try:
            parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
            for overrides in _jobs(parser, args.overrides, args.multirun):
                _check_job(script, name, overrides)
        except HydraException as e:
            if os.environ.get("HYDRA_FULL_ERROR") != "1":
                raise BotterError(_explain(e, script, name, args.overrides)) from None


def _parse_args(script: str, argv: list[str]):
    """Hydra's own command-line arguments, with argparse's usage block turned into one line."""
    from hydra._internal.utils import get_args_parser  # the parser hydra.main uses (hydra-core 1.3)

    parser = get_args_parser()
    parser.prog = script

    def error(message):
        raise BotterError(f"{message}; see {script} --help")

    parser.error = error
    return parser.parse_args(argv)


def _jobs(parser, overrides: list[str], multirun: bool) -> list:
    """The override lists Hydra composes: one, or with -m one per combination of the swept values."""
    parsed = parser.parse_overrides(overrides)
    if not multirun:
        return [parsed]
    values = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
              else [o.input_line] for o in parsed]
    return [parser.parse_overrides(list(job)) for job in itertools.product(*values)]


def _compose(name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose
    from hydra.errors import ConfigCompositionException, HydraException

    try:
        return compose(name, overrides, return_hydra_config=True)
    except HydraException:
        raise
    except (ValueError, OmegaConfBaseException) as e:  # Hydra lets a few through, like data.symbols.x=1
        raise ConfigCompositionException(f"cannot compose the config with {' '.join(overrides)}: {e}") from None


def _check_job(script: str, name: str, overrides: list) -> None:
    """Compose one job's config (Hydra raises for what it refuses) and check each value override
    against `base`, the config composed with the job's group choices alone."""
    cfg = _compose(name, [o.input_line for o in overrides])
    choices = cfg.hydra.runtime.choices  # group names as model, render@compare, hydra/launcher
    groups = [o for o in overrides if o.key_or_group + (f"@{o.package}" if o.package else "") in choices]
    base = _compose(name, [o.input_line for o in groups])
    problems = [_value_problem(o, cfg, base, script) for o in overrides
                if o not in groups and not o.is_delete() and not o.key_or_group.startswith("hydra.")]
    if any(problems):
        raise BotterError("; ".join(p for p in problems if p))


_ABSENT = object()


def _value(cfg, key: str):
    """The value at dotted `key`: interpolations resolved, None for `???` or an interpolation that
    cannot resolve, _ABSENT where there is no such key."""
    try:
        return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
    except (MissingMandatoryValue, InterpolationResolutionError):
        return None


def _value_problem(override, cfg, base, script: str) -> str | None:
    """What is wrong with one value override (or `+key`); None when nothing is."""
    key, line = override.key_or_group, override.input_line
    old, new = _value(base, key), _value(cfg, key)
    if old is _ABSENT:  # only a +key gets here: Hydra refuses to change a key that is not there
        return _added(line, key, base, script)
    if _fits(old, new):
        return None
    if isinstance(old, ListConfig):
        if not isinstance(new, ListConfig) and (not old or _fits(old[0], new)):
            return f"{line}: {key} takes a list, like {key}=[{line.split('=', 1)[1]}]"
        return f"{line}: {key} takes a list of items that are each {_kind(old[0])}, like [{_text(old[0])}]"
    if isinstance(old, DictConfig):
        like = f"{key}.{next(iter(old))}={_text(next(iter(old.values())))}" if old else f"{key}={{key:value}}"
        return f"{line}: {key} takes a mapping, like {like}"
    return f"{line}: {key} takes {_kind(old)}, like {key}={_text(old)}"


def _fits(old, new) -> bool:
    """Whether `new` is of the kind of the value `old` it replaces (null fits anywhere, takes anything)."""
    if old is None or new is None:
        return True
    if isinstance(old, bool):
        return isinstance(new, bool)
    if isinstance(old, (int, float)):
        return isinstance(new, (int, float)) and not isinstance(new, bool)
    if isinstance(old, ListConfig):
        return isinstance(new, ListConfig) and (len(old) == 0 or all(_fits(old[0], item) for item in new))
    if isinstance(old, DictConfig):
        return isinstance(new, DictConfig)
    return not isinstance(new, (ListConfig, DictConfig))


def _kind(value) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, ListConfig):
        return "a list"
    return "a mapping" if isinstance(value, DictConfig) else "a single value"


def _text(value) -> str:
    """A value as an override writes it: true, 0.001, [ETH/BTC,LTC/BTC], {type:ReLU}."""
    if isinstance(value, ListConfig):
        return f"[{','.join(_text(v) for v in value)}]"
    if isinstance(value, DictConfig):
        return "{" + ",".join(f"{k}:{_text(v)}" for k, v in value.items()) + "}"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _keys(node: DictConfig) -> list[str]:
    return [str(k) for k in node if k != "hydra"]


def _added(line: str, key: str, base, script: str) -> str | None:
    """The problem with `+key=...` adding a key `base` lacks; None where its mapping takes any key."""
    parts = key.split(".")
    i = len(parts) - 1
    while i > 0 and _value(base, ".".join(parts[:i])) is _ABSENT:  # the nearest existing node above it
        i -= 1
    parent = ".".join(parts[:i])
    node = _value(base, parent) if parent else base
    if not parent and base.hydra.runtime.choices.get(parts[0], "") is None:
        return _no_option(line.lstrip("+"), parts[0], script)
    if not isinstance(node, DictConfig):
        return f"{line}: {parent} is {_text(node)}, a single value with no keys"
    if not _keys(node):
        return None  # an empty mapping, like exchange.ccxt_config, takes any key
    missing = ".".join(parts[: i + 1])
    return f"{line} adds a key no code reads: {_not_a_key(missing, node, script, key[len(missing) + 1:])}"


def _not_a_key(path: str, parent: DictConfig, script: str, rest: str = "") -> str:
    """'path is not a key of its parent; did you mean ...?' or, with no near key under which `rest`
    (what the override sets below `path`) exists, the parent's keys."""
    head, _, last = path.rpartition(".")
    keys = _keys(parent)
    close = [k for k in difflib.get_close_matches(last, keys, n=3)
             if not rest or _value(parent[k], rest) is not _ABSENT]
    where = head or f"{script}'s config"
    if close:
        return f"{path} is not a key of {where}; did you mean {'.'.join(filter(None, (head, close[0], rest)))}?"
    return f"{path} is not a key of {where}; its keys: {', '.join(keys)}"


def _no_option(line: str, group: str, script: str) -> str:
    """The fix for a key under a config group that has no option chosen (like data in botter-backtest)."""
    from hydra.core.global_hydra import GlobalHydra

    options = GlobalHydra.instance().config_loader().get_group_options(group)
    return f"{line}: {script} chooses no {group} ({group}: null); choose one first: {group}=<{'|'.join(options)}> {line}"


def _line(overrides: list[str], key: str) -> str:
    """The override of the command line that sets `key` (with its +, ++ or ~), or the key itself."""
    return next((o for o in overrides if o.lstrip("+~").split("=", 1)[0] == key), key)


def _explain(e, script: str, name: str, overrides: list[str]) -> str:
    """One line for an error Hydra raised while parsing or composing: what is wrong and the fix."""
    from hydra.errors import MissingConfigException, OverrideParseException

    text = str(e)
    first, cause = text.splitlines()[0] if text else "", e.__cause__
    if isinstance(e, OverrideParseException):
        return f"cannot read the override {e.override!r} ({first}): write key=value, and quote a value " \
            f"that holds spaces, = or commas, like 'key=\"a b\"'"
    if isinstance(e, MissingConfigException) and e.options is not None and "/" in (e.missing_cfg_file or ""):
        group, option = e.missing_cfg_file.rsplit("/", 1)
        return f"{group}={option} is not an option of {group}; options: {', '.join(e.options)}"
    key = m[1] if (m := re.match(r"Could not override '(.+?)'\.", first)) else None
    choices = _compose(name, []).hydra.runtime.choices
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and key:
        path = re.sub(r"\[(\d+)\]", r".\1", cause.full_key)  # model.layers[0].foo -> model.layers.0.foo
        head = path.rpartition(".")[0]
        if not head and choices.get(path, "") is None:
            return _no_option(_line(overrides, key), path, script)
        if isinstance(cause.parent_node, DictConfig) and _keys(cause.parent_node):
            rest = key[len(path) + 1:] if key.startswith(path + ".") else ""
            return (f"{key}: " if rest else "") + _not_a_key(path, cause.parent_node, script, rest)
        node = _value(_compose(name, []), head)
        if isinstance(node, DictConfig):
            return f"{head} is empty and takes any key: add one with +{_line(overrides, key)}"
        if node is not _ABSENT:
            return f"{key}: {head} is {_text(node)}, a single value with no keys"
    if isinstance(cause, ConfigIndexError):
        path = re.sub(r"\[(\d+)\]", r".\1", cause.full_key)
        head, n = path.rpartition(".")[0], len(cause.parent_node)
        return f"{path}: {head} has {n} items, numbered 0 to {n - 1}; set one of them or the whole list, {head}=[...]"
    if key and cause is None:  # neither a key nor a group of this config's defaults list
        groups = [g for g in choices if not g.startswith("hydra/")]
        return f"{_line(overrides, key)}: {key} is not a config group of {script}; its groups: {', '.join(groups)}"
    if m := re.match(r"Could not append to config\. An item is already at '(.+?)'", first):
        return f"+{m[1]}: {m[1]} is already there; set it without the +: {_line(overrides, m[1]).lstrip('+')}"
    if m := re.match(r"Could not delete from config\. '(.+?)' does not exist", first):
        return f"~{m[1]}: there is no {m[1]} to delete"
    if m := re.match(r"Ambiguous value for argument '(.+?)'", first):
        return f"{m[1]} gives several values: add -m to run one job per value, write a list [a,b] " \
            f"or quote the value 'a,b'"
    if m := re.match(r"(.+) appears more than once in the final defaults list", first):
        return f"{m[1]} is chosen twice (+ adds a choice the config already makes): {m[1]}=<option> without the +"
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("\t", "Config search"))]
    if cause is not None:
        lines.append(str(cause).splitlines()[0])
    return " ".join(lines) + " (HYDRA_FULL_ERROR=1 shows Hydra's own report)"


def overrides() -> list[str]:
    """The overrides on the command line of this Hydra app, as given ([] outside one): what a run
    folder records of how it was made."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def given(key: str) -> bool:
    """Whether `key` was set on the command line of this Hydra app (False outside one)."""
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in overrides())


def load_candles(d: dict, data_dir) -> dict:
    """{symbol: candles} for a data config (the keys of configs/data/*.yaml), without the candles no
    chart can be drawn from (botter.dataset.chartable: the backtest sees them missing, as the model does)."""
    from botter.data import load_config
    from botter.dataset import chartable

    return chartable(load_config(d, data_dir))


def build_windows(c: dict, *, progress: bool, candles: dict | None = None):
    """(candles, hours, windows) of a resolved train or walkforward config: the candles of its data
    (loaded unless given), the market hours (data.hours resolved) and every decidable window
    (botter.dataset.build)."""
    from botter import dataset
    from botter.data import hours as market_hours

    d, ds = c["data"], c["dataset"]
    if candles is None:
        candles = load_candles(d, c["paths"]["data_dir"])
    hours = market_hours.resolve(d["hours"], candles, d["timeframe"], until=training_end(c, candles))
    windows = dataset.build(
        candles, window=d["window"], horizon=d["horizon"], classes=d["classes"], timeframe=d["timeframe"],
        render=c["render"], hours=hours, flat_threshold=ds["flat_threshold"],
        cache_dir=c["paths"]["cache_dir"] if ds["cache"] else None, progress=progress,
    )
    return candles, hours, windows


def training_end(c: dict, candles: dict):
    """Where the first training span of a resolved train or walkforward config ends, roughly (before
    the windows exist): what data.hours=auto learns from. dataset.split.val_start where given, else
    the train share of the candles' time span (a walk-forward run: its first fold's train span); a
    pandas Timestamp, or None without candles."""
    import pandas as pd

    from botter.data.candles import timeframe_ms, to_ms
    from botter.walkforward import parse_span

    times = [t for df in candles.values() if len(df) for t in (df.index[0], df.index[-1])]
    if not times:
        return None
    first, last = min(times), max(times)
    if "walkforward" in c:
        span = parse_span(c["walkforward"]["train"], "train")
        if isinstance(span, pd.Timedelta):
            return first + span
        if isinstance(span, int):
            return first + span * pd.Timedelta(timeframe_ms(c["data"]["timeframe"]), "ms")
        share = span
    elif c["dataset"]["split"]["val_start"] is not None:
        return pd.Timestamp(to_ms(c["dataset"]["split"]["val_start"]), unit="ms", tz="UTC")
    else:
        share = c["dataset"]["split"]["train"]
    return first + share * (last - first)


def model_info(c: dict, hours) -> dict:
    """What a run's model reads (model.pt's info: botter.inference.Predictor), from its resolved config."""
    d = c["data"]
    return {"render": c["render"], "timeframe": d["timeframe"], "hours": hours,
            "flat_threshold": c["dataset"]["flat_threshold"], **{k: d[k] for k in ("window", "horizon", "classes")}}


def shown_path(path) -> str:
    """`path` as the user would type it: relative to the working folder where it lies under it
    (outputs/train/...; Hydra hands absolute paths on), else as it is."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def signal_settings(backtest_cfg: dict, horizon: int) -> dict:
    """The backtest config with min_hold filled in: null holds each position for the label's horizon
    (the model forecasts the return of a position held that long)."""
    return {**backtest_cfg, "min_hold": horizon if backtest_cfg["min_hold"] is None else backtest_cfg["min_hold"]}


def report_backtest(predictions, candles: dict, backtest_cfg: dict, out_dir, start=None, end=None, *,
                    in_sample: bool = False) -> dict:
    """Backtest predictions on their candles, print the statistics, write the report into out_dir;
    `in_sample` marks every table, file and picture IN-SAMPLE."""
    from botter.backtest import backtest_predictions, stats_table
    from botter.plots import write_report

    results = backtest_predictions(predictions, candles, **backtest_cfg)
    sample = "IN-SAMPLE" if in_sample else "out-of-sample"
    print(f"{'IN-SAMPLE ' if in_sample else ''}backtest of {predictions.time.min()} .. {predictions.time.max()} "
          f"({', '.join(f'{k}={v}' for k, v in backtest_cfg.items())}):")
    print(stats_table(results, sample=sample).to_string())
    paths = write_report(results, candles, out_dir, plot_start=start, plot_end=end, sample=sample,
                         settings=backtest_cfg)
    print(f"wrote {', '.join(path.name for path in paths)} in {shown_path(out_dir)}")
    return results
