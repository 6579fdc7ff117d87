"""The subscription that keeps level 1 fresh: other processes' invalidations arrive here."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from .breaker import Breaker
from .local import LocalCache

log = logging.getLogger(__name__)

# Writers publish the keys they invalidate here, space-separated.
INVALIDATION_CHANNEL = "phaseshift:invalidate"


class InvalidationListener:
    """A daemon thread subscribed to INVALIDATION_CHANNEL that drops each published key
    from `local`. Level 1 is on only while the subscription is confirmed and no request
    has found Redis failing since (the breaker counts those failures)."""

    def __init__(
        self,
        client: Any,
        local: LocalCache,
        breaker: Breaker,
        errors: tuple[type[BaseException], ...],
    ) -> None:
        self.client = client
        self.local = local
        self.breaker = breaker
        self.errors = errors
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cache-invalidations", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._closing.is_set():
            resubscribe = False
            try:
                resubscribe = self._follow()
            except self.errors as exc:
                log.debug("cache invalidation channel lost: %s", exc)
            except Exception:  # the listener must outlive any surprise
                log.exception("cache invalidation listener failed")
            finally:
                self.local.disable()
            if not resubscribe:
                self._closing.wait(self.breaker.retry_after)

    def _follow(self) -> bool:
        """Subscribe and apply messages until closing or a request finds Redis failing;
        True in the latter case, to subscribe again at once."""
        failures = self.breaker.failures
        pubsub = self.client.pubsub()
        try:
            pubsub.subscribe(INVALIDATION_CHANNEL)
            while not self._closing.is_set():
                if self.breaker.failures != failures and self.breaker.closed:
                    # A request found Redis failing (which emptied level 1): confirm the
                    # subscription afresh now that Redis may be used again.
                    return True
                message = pubsub.get_message(timeout=0.2)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    # A confirmed subscription; on a reconnection anything may have been
                    # missed before it, which enable() forgets.
                    self.local.enable()
                elif message["type"] == "message":
                    for key in bytes(message["data"]).decode().split():
                        self.local.invalidate(key)
            return False
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()
