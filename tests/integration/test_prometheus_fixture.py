"""The Prometheus fixture scrapes a target the test adds, and survives stop/start."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest

from phaseshift.lab.prometheus import PrometheusServer

pytestmark = pytest.mark.integration


class _Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'demo_value{plan="shop"} 42\n'
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def exporter() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def query(prometheus: PrometheusServer, promql: str) -> list[dict[str, object]]:
    response = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": promql}, timeout=5)
    result: list[dict[str, object]] = response.json()["data"]["result"]
    return result


def test_added_target_is_scraped_and_survives_restart(
    prometheus: PrometheusServer, exporter: str
) -> None:
    prometheus.add_target("fixture-check", exporter, {"namespace": "ns1"})
    result = query(prometheus, 'demo_value{job="fixture-check"}')
    assert result and result[0]["value"][1] == "42"  # type: ignore[index]
    assert result[0]["metric"]["namespace"] == "ns1"  # type: ignore[index]

    prometheus.stop()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{prometheus.url}/-/ready", timeout=1)
    prometheus.start()
    prometheus.wait_scraped(exporter)
    assert query(prometheus, 'demo_value{job="fixture-check"}')
    prometheus.remove_targets("fixture-check")
