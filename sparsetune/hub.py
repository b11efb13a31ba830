"""Offline-first access to the Hugging Face Hub: fail in seconds, naming the local option, when it is unreachable."""
from __future__ import annotations

import os
import socket
from functools import lru_cache


class OfflineError(RuntimeError):
    pass


def offline_env() -> bool:
    return any(os.environ.get(v, "0").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    if offline_env():
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def require_hub(what: str, local_option: str) -> None:
    if not hub_reachable():
        raise OfflineError(
            f"{what} is not available locally and the Hugging Face Hub is unreachable "
            f"(offline={offline_env()}); point {local_option} at a local copy"
        )
