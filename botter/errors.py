"""The one exception type for bad input from a user (config, data, symbol, network)."""


class BotterError(Exception):
    """Bad input: the message says what is wrong and what to do.

    The console scripts print it as one line and exit with code 2; a library caller can catch it.
    """


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (whitespace collapsed, cut at `limit` characters), or its
    type's name where it has none: what goes into a BotterError about a file another library read."""
    text = " ".join(str(e).split())
    return (text[:limit] + " ...") if len(text) > limit else text or type(e).__name__
