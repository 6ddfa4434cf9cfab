"""Errors that are the user's to fix: the CLI prints them as one line and exits with `exit_code`."""


class RcdError(Exception):
    exit_code = 2


class ParamsError(RcdError, ValueError):
    """A params problem, already phrased as one line."""


class PromptFileError(RcdError, ValueError):
    """A prompt file that is missing or unusable, named with its params key."""


class CacheError(RcdError):
    """A latent cache that cannot be used as asked (another teacher or settings, incomplete, corrupt)."""


class UserError(RcdError):
    """Any other bad input (a path, an option)."""


class GateFailed(RcdError):
    """A quality gate said no; what was there before stays as it was."""
    exit_code = 1


class RegistryError(RcdError):
    """The MLflow store could not be read or written: nothing is promoted. Not the user's input, and
    possibly transient (a locked database, a server down), so its own exit code."""
    exit_code = 3
