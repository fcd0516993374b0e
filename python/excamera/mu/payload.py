"""The launch payload: everything a fresh worker needs, as one JSON document.

A local backend writes it to the worker's stdin; a Lambda backend would send it as the invocation
event; a Ray backend would pass it as the task argument. Keeping it one plain, versioned JSON object
is what lets the worker runtime be the same code everywhere.

Unlike mu's launch event (which shipped the server's private key to every worker), the payload
holds only the worker's *own* short-lived certificate and key, bound to (job, worker id), plus the
trust anchors it uses to check the coordinator and relay. It carries nothing of the
coordinator's environment: no credentials (a Lambda or Ray worker reaches storage with its own
role), no paths of the coordinator's machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PAYLOAD_VERSION = 2


@dataclass
class LaunchPayload:
    """What the coordinator tells one worker at launch."""

    coordinator_host: str
    coordinator_port: int
    job_id: str
    worker_id: int
    #: One-time nonce for this launch attempt; the coordinator matches the connection by it, so a
    #: stale process from an earlier attempt of the same worker id cannot take over a retry.
    token: str
    #: The worker's own certificate followed by any intermediates (PEM).
    cert_pem: str
    key_pem: str
    #: Trust anchor (PEM) for verifying the coordinator's and relay's certificates.
    ca_pem: str
    storage_url: str = ""
    relay_host: str = ""
    relay_port: int = 0
    #: Python modules whose ``register_operations(registry)`` adds named operations.
    operation_modules: list[str] = field(default_factory=list)
    #: Seconds the worker keeps trying to reach the coordinator before giving up.
    connect_timeout: float = 30.0
    debug: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    #: The coordinator's code identity (:func:`excamera.identity.code_identity`); a worker
    #: running other code says so and exits, and the coordinator refuses its hello.
    code: dict[str, str] = field(default_factory=dict)
    version: int = PAYLOAD_VERSION

    def to_json(self) -> str:
        # fields one level deep, without asdict's deep copy (a coordinator of 10,000 workers
        # makes 10,000 of these)
        return json.dumps({f: getattr(self, f) for f in self.__dataclass_fields__})

    @classmethod
    def from_json(cls, text: str | bytes) -> LaunchPayload:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"launch payload is not JSON: {exc}") from None
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: Any) -> LaunchPayload:
        """The payload from its parsed JSON object; ValueError says what is wrong."""
        if not isinstance(obj, dict):
            raise ValueError("launch payload is not a JSON object")
        if obj.get("version") != PAYLOAD_VERSION:
            raise ValueError(f"launch payload version {obj.get('version')!r} is not supported")
        names = set(cls.__dataclass_fields__)
        unknown = set(obj) - names
        if unknown:
            raise ValueError(f"launch payload has unknown fields: {sorted(unknown)}")
        try:
            return cls(**obj)
        except TypeError as exc:
            raise ValueError(f"launch payload is incomplete: {exc}") from None
