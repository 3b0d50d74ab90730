"""What ``/metrics`` answers, with its registry made on the first scrape.

prometheus_client imports http.server, wsgiref and urllib.request with it (1.5 MiB): a
gateway nobody scrapes never loads them. A scrape runs on a worker thread (see
gateway/metrics.py), the first one with its imports.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from gateway.assembly import Gateway

__all__ = ["Scrapes"]


class Scrapes:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._registry: CollectorRegistry | None = None
        self._making = threading.Lock()

    def scrape(self) -> tuple[bytes, str]:
        """The metrics in Prometheus text format, and its media type; call on a worker
        thread."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        with self._making:
            if self._registry is None:
                from gateway.metrics import RuntimeCollector, WritesCollector

                registry = CollectorRegistry(auto_describe=True)
                registry.register(RuntimeCollector(self._gateway.runtime))
                registry.register(WritesCollector(self._gateway.writes))
                self._registry = registry
        return generate_latest(self._registry), CONTENT_TYPE_LATEST
