"""The one exception type for bad input from a user (config, data, symbol, network)."""


class BotterError(Exception):
    """Bad input: the message says what is wrong and what to do.

    The console scripts print it as one line and exit with code 2; a library caller can catch it.
    """
