"""User-facing errors: the message is one line the command line prints as is."""


class CodecLabError(Exception):
    """A user error (bad file, wrong model, unsupported input). ``str(err)`` is the message."""
