# mypy: disable-error-code="union-attr"
"""Leader election on a coordination.k8s.io Lease, so several operator replicas never fight.

Only the holder of the Lease evaluates plans; the others stand by and take over when
the holder stops renewing (crash, eviction) for longer than the lease duration.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)


class LeaseElector:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str = "phaseshift-operator",
        *,
        duration_seconds: int = 15,
        renew_seconds: float = 5.0,
    ) -> None:
        self.coordination = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.duration = duration_seconds
        self.renew = renew_seconds
        self._leader = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease", daemon=True)

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.renew * 2)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                held = self._try_acquire()
            except Exception as e:  # the API server may be briefly unreachable
                log.warning("lease %s/%s: %s", self.namespace, self.name, e)
                held = False
            if held != self.is_leader:
                log.info(
                    "lease %s/%s: %s", self.namespace, self.name, "acquired" if held else "lost"
                )
            (self._leader.set if held else self._leader.clear)()
            self._stop.wait(self.renew)

    def _try_acquire(self) -> bool:
        now = datetime.now(UTC)
        spec = client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.duration,
            renew_time=now,
            acquire_time=now,
        )
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            body = client.V1Lease(metadata=client.V1ObjectMeta(name=self.name), spec=spec)
            try:
                self.coordination.create_namespaced_lease(self.namespace, body)
            except ApiException as conflict:
                if conflict.status == 409:
                    return False
                raise
            return True
        current = lease.spec
        mine = current.holder_identity == self.identity
        expired = (
            current.renew_time is None
            or current.renew_time
            + timedelta(seconds=current.lease_duration_seconds or self.duration)
            < now
        )
        if not (mine or expired):
            return False
        if mine:
            spec.acquire_time = current.acquire_time
        lease.spec = spec
        try:
            # resourceVersion in the body makes this a compare-and-swap.
            self.coordination.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True
