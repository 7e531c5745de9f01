"""Progress bars: drawn on a terminal, left out of logs and pipes (where each redraw would be a line)."""

from tqdm import tqdm


def bar(iterable=None, *, show: bool = True, **kwargs) -> tqdm:
    """A tqdm bar when `show` and the output is a terminal (tqdm's disable=None), else a silent one."""
    return tqdm(iterable, disable=None if show else True, **kwargs)
