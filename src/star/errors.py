"""Domain errors: each carries a one-line message that the CLI prints instead of a traceback."""


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
