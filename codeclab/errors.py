"""User-facing errors: the message is one line the command line prints as is."""

import functools
import sys


class CodecLabError(Exception):
    """A user error (bad file, wrong model, unsupported input). ``str(err)`` is the message."""


def one_line_errors(program: str):
    """Decorate a script's main: a :class:`CodecLabError` prints ``PROGRAM: error: MESSAGE`` and
    exits 1 (``codeclab`` itself, which returns codes and handles signals, has its own)."""

    def decorate(main):
        @functools.wraps(main)
        def wrapped(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except CodecLabError as err:
                print(f"{program}: error: {err}", file=sys.stderr)
                sys.exit(1)

        return wrapped

    return decorate
