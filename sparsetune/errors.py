"""Exceptions that mean "the user's input is wrong": the CLI prints them as one line and exits 2."""


class ConfigError(ValueError):
    """Bad user input: reported as one clear message, without a traceback."""
