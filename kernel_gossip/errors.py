"""Errors a user can act on: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """A problem with the input or the host, stated with its cause and its fix."""


EXIT_USER_ERROR = 2
