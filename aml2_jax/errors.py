"""The one exception type for problems a user can fix.

`launch.py` prints a `UserError` as a single line on stderr and exits non-zero, with no traceback
(unless `--verbose`). Its message names the problem and the fix.
"""


class UserError(Exception):
  """A problem with the user's input (data file, config, checkpoint, workdir), not a bug."""
