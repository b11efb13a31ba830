"""Offline-first access to the Hugging Face Hub: fail in seconds, naming the local option, when it is unreachable."""
from __future__ import annotations

import os
from functools import lru_cache

from huggingface_hub import constants
from huggingface_hub.utils import get_session


class OfflineError(RuntimeError):
    pass


def offline_env() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once at import; the variables are read again here so that a switch
    # set later in the process (tests, notebooks) counts too
    flags = (os.environ.get(v, "0").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return constants.is_offline_mode() or any(flags)


def hub_endpoint() -> str:
    """The hub URL downloads go to: huggingface_hub's, so an HF_ENDPOINT mirror counts."""
    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """One HEAD request through huggingface_hub's own HTTP session (its proxies, headers and endpoint)."""
    if offline_env():
        return False
    try:
        get_session().head(hub_endpoint(), timeout=timeout)
        return True
    except Exception:  # connection refused, DNS, proxy, timeout: all mean "not reachable now"
        return False


def require_hub(what: str, local_option: str) -> None:
    if not hub_reachable():
        raise OfflineError(
            f"{what} is not available locally and the Hugging Face Hub ({hub_endpoint()}) is unreachable "
            f"(offline={offline_env()}); point {local_option} at a local copy"
        )
