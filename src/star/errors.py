"""Domain errors: each carries a one-line message that the CLI prints instead of a traceback."""


def first_line(e: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none), for
    one-line errors about what a library raised."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class StarError(Exception):
    """Base of every error a user can cause and fix; the message says what and where."""


class ConfigError(StarError):
    """An option or config file value is invalid."""


class BadInputError(StarError):
    """A data file is malformed; the message names the file and line."""


class EmptyPoolError(StarError):
    """Nothing left to select from."""


class RunDirError(StarError):
    """A run directory cannot be resumed with this config or this version."""


class ModelError(StarError):
    """A model name or path that cannot be loaded."""
