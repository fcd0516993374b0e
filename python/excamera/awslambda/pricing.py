"""What Lambda bills for a job: GB-seconds, requests and an estimate in dollars.

The prices live in ``prices.json`` beside this module, which names their region, architecture
and the date they were read. Duration is billed per millisecond of init plus handler time at
the function's memory size (init is billed since 2025-08-01); each invocation that reached the
function is one request. Throttled (429) and refused (413) requests are not billed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@cache
def prices() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("prices.json").read_text())


def billed_ms(seconds: float) -> int:
    """Lambda rounds each invocation's duration up to the next millisecond."""
    return max(1, math.ceil(seconds * 1000 - 1e-9))


@dataclass
class LambdaBill:
    requests: int = 0
    gb_seconds: float = 0.0

    def add(self, seconds: float, memory_mb: int) -> None:
        self.requests += 1
        self.gb_seconds += billed_ms(seconds) / 1000 * memory_mb / 1024

    def usd(self, architecture: str = "x86_64") -> float:
        p = prices()
        per_gbs = p["per_gb_second_usd"][architecture]
        return self.gb_seconds * per_gbs + self.requests * p["per_request_usd"]

    @staticmethod
    def price_label(architecture: str = "x86_64") -> str:
        p = prices()
        return f"{p['region']} {architecture} prices of {p['date']}"
