"""The one exception type for problems a user can fix."""


class UserError(Exception):
  """Bad input (data, config, checkpoint, workdir): `launch.py` prints its message, which names
  the problem and the fix, as one line and exits 2, with no traceback unless `--verbose`."""
