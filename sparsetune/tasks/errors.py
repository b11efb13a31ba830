"""DataError: a data file or row the task cannot use. A ConfigError, so the CLI prints it as one line
(`error: <file>:<line>: what was expected`) and exits 2 instead of showing a parser's traceback."""
from __future__ import annotations

from ..errors import ConfigError


class DataError(ConfigError):
    """Unusable data: the message names the file (and line, where there is one) and what was expected."""
