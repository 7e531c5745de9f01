"""A wrong command line gets one line, `error: ...`, and exit code 2 from every console script.

The scripts are read from pyproject.toml's [project.scripts], so a script added later is covered
too; the wrong overrides are made from each script's own config (a typo of one of its keys, of one
of its options, a value of another kind than its default, a `+key` under a group it leaves null),
plus the cases of issue 15 where the script has the key.
"""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

from botter.cli import check_command_line
from botter.config import CONFIG_MODULE
from botter.errors import BotterError

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]

# Values that are wrong wherever a script has the key (issue 15).
WRONG_VALUES = {"data.window": "-1", "render.height": "4", "trainer.max_epochs": "abc"}


def config_name(entry_point: str) -> str:
    """botter.cli.train:main -> train: each console script runs configs/<its module>.yaml."""
    name = entry_point.split(":")[0].rsplit(".", 1)[-1]
    assert (ROOT / "configs" / f"{name}.yaml").is_file(), f"{entry_point}: no configs/{name}.yaml"
    return name


def composed(name: str, hydra: bool = False) -> DictConfig:
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return compose(name, return_hydra_config=hydra)


def leaves(d: dict, prefix=""):
    """(dotted key, value) of every value of a plain config dict."""
    for key, value in d.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def wrong_command_lines(script: str, name: str, given: dict) -> list[list[str]]:
    """Command lines that must each end in one error line: made from the script's config."""
    cfg = composed(name)
    missing = [k for k, v in leaves(OmegaConf.to_container(cfg)) if v == "???"]
    unknown = [k for k in missing if k not in given]
    assert not unknown, f"{script}: give the test a value for {unknown} (the dict `given`)"
    fill = [f"{k}={given[k]}" for k in missing]
    values = dict(leaves(OmegaConf.to_container(OmegaConf.merge(cfg, OmegaConf.from_dotlist(fill)), resolve=True)))
    number = next((k for k, v in values.items() if "." in k and isinstance(v, (int, float)) and not isinstance(v, bool)),
                  None)  # botter-runs has no nested number
    lines = [[], ] if missing else []  # a `???` left out
    lines += [fill + extra for extra in (["nosuchkey=1"], ["a=b=c"], ["--nosuchflag"])]
    if number:
        lines += [fill + extra for extra in ([f"{number[:-1]}=1"], [f"+{number[:-1]}=1"], [f"{number}=abc"])]
    lines += [fill + [f"{k}=x"] for k, v in values.items() if isinstance(v, list)][:1]
    lines += [fill + [f"{k}=maybe"] for k, v in values.items() if isinstance(v, bool)][:1]
    choices = {g: o for g, o in composed(name, hydra=True).hydra.runtime.choices.items() if not g.startswith("hydra/")}
    lines += [fill + [f"{g}={o[:-1]}"] for g, o in choices.items() if o][:1]
    lines += [fill + [f"+{g}.symbols=[XMR/BTC]"] for g, o in choices.items() if o is None]
    lines += [fill + [f"{k}={v}"] for k, v in WRONG_VALUES.items() if k in values]
    return lines


def run(script: str, argv: list[str], cwd) -> tuple[int, str]:
    """(exit code, stderr) of a console script; stderr keeps its carriage returns (no text=True)."""
    env = {**os.environ, "HYDRA_FULL_ERROR": ""}
    done = subprocess.run([str(BIN / script), *argv], cwd=cwd, capture_output=True, env=env, timeout=300, check=False)
    return done.returncode, done.stderr.decode()


def shown(stderr: str) -> list[str]:
    """The lines a terminal shows: a progress bar cleared with carriage returns leaves nothing."""
    return [line.rsplit("\r", 1)[-1] for line in stderr.split("\n") if line.rsplit("\r", 1)[-1].strip()]


@pytest.mark.slow
def test_every_console_script_answers_wrong_input_with_one_line(tiny_run, tmp_path):
    cases = [(script, argv) for script, entry in SCRIPTS.items()
             for argv in wrong_command_lines(script, config_name(entry), {"run_dir": tiny_run, "path": tiny_run,
                                                                                 "runs_dir": tiny_run.parent})]
    assert len(cases) >= 8 * len(SCRIPTS)
    folders = [tmp_path / str(i) for i in range(len(cases))]
    for folder in folders:
        folder.mkdir()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        done = list(pool.map(run, [s for s, _ in cases], [a for _, a in cases], folders))
    wrong = [f"{script} {' '.join(argv)}: exit {code}, stderr {stderr[-600:]!r}"
             for (script, argv), (code, stderr) in zip(cases, done)
             if code != 2 or len(shown(stderr)) != 1 or not shown(stderr)[0].startswith("error: ")]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("script, argv, says", [
    ("botter-train", ["trainer.max_epoch=1"], "trainer.max_epoch is not a key of trainer; did you mean trainer.max_epochs?"),
    ("botter-train", ["model=smal"], "model=smal is not an option of model; options: jkx20, seed, small"),
    ("botter-train", ["trainer.max_epochs=abc"], "trainer.max_epochs=abc: trainer.max_epochs takes a number, like trainer.max_epochs=2"),
    ("botter-backtest", ["run_dir=x", "+data.symbols=[XMR/BTC]"],
     ("data.symbols=[XMR/BTC]: botter-backtest chooses no data (data: null); choose one first: "
     "data=<planted|sample|store> data.symbols=[XMR/BTC]")),
    ("botter-backtest", ["run_dir=x", "data.symbols=[XMR/BTC]"], "choose one first: data=<planted|sample|store>"),
    ("botter-train", ["+trainer.max_epoch=1"], ("+trainer.max_epoch=1 adds a key no code reads: trainer.max_epoch is "
                                                "not a key of trainer; did you mean trainer.max_epochs?")),
    # a near key is offered only where the rest of the override exists under it
    ("botter-shape", ["trainer.max_epoch=1"], "trainer is not a key of botter-shape's config; its keys: data, render, model"),
    ("botter-shape", ["traner.max_epochs=1"], "traner is not a key of botter-shape's config; its keys: data, render, model"),
    ("botter-train", ["traner.max_epochs=1"], "did you mean trainer.max_epochs?"),
    ("botter-paper", ["run_dir=x", "data=sample"], "data=sample: data is not a config group of botter-paper"),
    ("botter-train", ["data.symbols=ETH/BTC"], "data.symbols takes a list, like data.symbols=[ETH/BTC]"),
    ("botter-train", ["model.layers=[1,2]"], "model.layers takes a list of items that are each a mapping, like [{type:"),
    ("botter-train", ["trainer.progress=1"], "trainer.progress takes true or false, like trainer.progress=true"),
    ("botter-train", ["exchange.ccxt_config.timeout=5"], "add one with +exchange.ccxt_config.timeout=5"),
    ("botter-train", ["+trainer.max_epochs=3"], "set it without the +: trainer.max_epochs=3"),
    ("botter-train", ["trainer.lr=1e-3,3e-4"], "add -m to run one job per value"),
    ("botter-train", ["-m", "trainer.lr=1e-3,abc"], "trainer.lr=abc: trainer.lr takes a number"),
    ("botter-train", ["--nosuchflag"], "unrecognized arguments: --nosuchflag; see botter-train --help"),
    ("botter-train", ["a=b=c"], "cannot read the override 'a=b=c'"),
])
def test_the_line_names_the_key_and_the_fix(script, argv, says):
    with pytest.raises(BotterError) as e:
        check_command_line(script, script.removeprefix("botter-"), argv)
    assert says in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("argv", [
    ["+exchange.ccxt_config.timeout=5000"],  # an empty mapping takes any key
    ["-m", "trainer.lr=1e-3,3e-4", "model=small,jkx20"],
    ["trainer.lr=1", "render.ma=null", "data=planted", "data.params.episodes=100", "hydra.run.dir=somewhere"],
])
def test_right_command_lines_pass(argv):
    check_command_line("botter-train", "train", argv)


def test_hydra_full_error_keeps_hydras_report(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    check_command_line("botter-train", "train", ["model=smal"])  # left to Hydra
    done = subprocess.run([str(BIN / "botter-train"), "model=smal"], cwd=tmp_path, capture_output=True, text=True,
                          check=False)
    assert done.returncode != 0
    assert "Could not find 'model/smal'" in done.stderr and "Traceback" in done.stderr


@pytest.mark.parametrize("raises, code, says", [
    ("KeyError('source')", 1, "KeyError: 'source'"),  # a bug keeps its traceback
    ("BotterError('bad input: fix it')", 2, "error: bad input: fix it"),
    # a folder the command cannot write (a run folder without permission, a full disk) is no bug
    ("PermissionError(13, 'Permission denied', '/r/backtests/x')", 2,
     "error: cannot write /r/backtests/x (Permission denied): make its folder writable"),
    ("OSError(28, 'No space left on device', '/r/paper/p/equity.png')", 2,
     "error: cannot write /r/paper/p/equity.png (No space left on device)"),
    ("OSError(2, 'No such file or directory', '/r/x')", 1, "FileNotFoundError"),  # not a write problem: a bug
])
def test_an_unexpected_exception_in_a_task_keeps_its_traceback(tmp_path, raises, code, says):
    program = ("import sys\nfrom botter.cli import app\nfrom botter.errors import BotterError\n"
               f"def task(cfg):\n    raise {raises}\nsys.argv = ['botter-shape']\napp('shape', task)\n")
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == code
    assert says in done.stderr
    assert ("Traceback" in done.stderr) == (code == 1)


def test_output_piped_into_a_reader_that_stops_ends_quietly(tmp_path):
    program = ("import sys\nfrom botter.cli import app\n"
               "def task(cfg):\n    for i in range(100000):\n        print('line', i)\n"
               "sys.argv = ['botter-shape']\napp('shape', task)\n")
    proc = subprocess.Popen([sys.executable, "-c", program], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"line 0\n"
    proc.stdout.close()  # what `| head -1` does after its line
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141  # 128 + SIGPIPE, as a shell reports a command stopped by the pipe
    assert stderr == ""


@pytest.mark.parametrize("script, argv", [
    ("botter-walkforward", ["walkforward.train=3x"]),  # refused by the task, after Hydra made the folder
    ("botter-train", ["data.window=1000000"]),  # no window: refused once the candles are read
])
def test_a_refused_run_leaves_no_run_folder(tmp_path, script, argv):
    code, stderr = run(script, [*argv, "trainer.progress=false"], tmp_path)
    assert code == 2 and shown(stderr)[0].startswith("error: "), stderr
    made = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")]
    assert all(p.count("/") < 2 for p in made), made  # outputs/<command>/ at most, no run folder in it


def test_a_refused_run_in_the_working_folder_leaves_it_as_it_was(tmp_path):
    code, stderr = run("botter-train", ["data.symbols=[NOPE/BTC]", "hydra.run.dir=.", "trainer.progress=false"],
                       tmp_path)
    assert code == 2 and "NOPE/BTC" in shown(stderr)[0], stderr
    assert tmp_path.is_dir() and not any(tmp_path.iterdir())  # kept, and no run.lock left in it
