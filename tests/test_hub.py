"""The hub check goes through huggingface_hub: its offline switch and its endpoint (HF_ENDPOINT mirrors)."""
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from sparsetune import hub


class _Ok(BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def mirror():
    server = HTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(autouse=True)
def fresh_check():
    hub.hub_reachable.cache_clear()
    yield
    hub.hub_reachable.cache_clear()


def test_a_reachable_mirror_counts_as_the_hub(monkeypatch, mirror):
    for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", mirror)
    assert hub.hub_endpoint() == mirror and hub.hub_reachable()


def test_offline_switch_wins_over_a_reachable_mirror(monkeypatch, mirror):
    monkeypatch.setenv("HF_ENDPOINT", mirror)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub.hub_reachable()


def test_unreachable_endpoint_is_named_in_the_error(monkeypatch):
    for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(hub.OfflineError, match=r"127\.0\.0\.1:9.*task\.data_dir"):
        hub.require_hub("dataset glue/rte", "task.data_dir")
