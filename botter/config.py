"""Hydra glue shared by the console scripts and the tests: resolvers and composing the packaged configs.

The library modules never import this: they take plain arguments.
"""

import math

from hydra import compose as _compose
from hydra import initialize_config_module
from omegaconf import DictConfig, OmegaConf

CONFIG_MODULE = "botter.configs"

# `width: ${mul:3,${data.window}}`: a value is set once and derived everywhere else.
OmegaConf.register_new_resolver("mul", lambda *xs: math.prod(xs), replace=True)


def compose(config_name: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose a packaged entry-point config (e.g. "train") with command-line style overrides."""
    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        return _compose(config_name=config_name, overrides=list(overrides))
