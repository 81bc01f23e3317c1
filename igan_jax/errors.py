"""The one base class of every error a user can fix.

A bad config value or flag, a missing or corrupt dataset, an unusable workdir, a checkpoint
directory that does not match the config, evaluation weights that are not there: each raises a
subclass of `UserError` whose message is one line naming the problem and the fix. The command
line (main.py) catches `UserError` once and exits with status 2; anything else is a bug and
keeps its traceback. This module imports nothing, so every layer can import it.
"""


class UserError(Exception):
  """An error the user can fix; str(e) is one line that says how."""


class ConfigError(UserError, ValueError):
  """A bad configuration value; str(e) says which key and what to do. Here, not in config.py,
  so that a layer below the config (parallel.py: the device mesh) can raise it without importing
  the config module and, through its validation, the losses."""
