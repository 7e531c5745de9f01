"""Every option of every config group composes with its command's config and resolves."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from botter.config import compose
from botter.model import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# The command whose config uses each group; run_dir stands in for the ??? a user must give.
ENTRY = {"data": "train", "render": "train", "model": "train", "trainer": "train", "exchange": "fetch",
         "paths": "train", "backtest": "backtest", "feed": "paper", "experiment": "train", "validate": "fetch",
         "bootstrap": "train", "walkforward": "walkforward"}
OPTIONS = sorted((p.parent.name, p.stem) for p in CONFIGS.glob("*/*.yaml"))


def test_every_group_is_covered():
    assert {group for group, _ in OPTIONS} == set(ENTRY)


@pytest.mark.parametrize("group, option", OPTIONS)
def test_option_composes_and_resolves(group, option):
    override = f"+experiment={option}" if group == "experiment" else f"{group}={option}"
    cfg = compose(ENTRY[group], [override, "run_dir=some/run"] if ENTRY[group] in ("backtest", "paper") else [override])
    plain = OmegaConf.to_container(cfg, resolve=True)
    if "model" in plain:  # the CNN builds for the configured image and gives one logit per class
        r = plain["render"]
        net = build_model(**plain["model"], input_hw=(r["height"], r["width"]))
        assert net.head[-1].out_features == plain["data"]["classes"]
