"""``UserError``: a problem with what the user asked for — an option, a file, a folder — not a bug.

The command line prints its message as one line and exits with status 2; any other exception is a bug
in minseg and keeps its traceback. Messages name the option or file, what was expected and what was found.
"""


class UserError(Exception):
    """Bad input from the user; ``minseg`` prints ``minseg COMMAND: error: MESSAGE`` and exits with status 2."""
