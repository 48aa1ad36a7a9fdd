"""Prometheus metrics of the lookups, in whichever process makes them."""

from __future__ import annotations

from prometheus_client import Counter

CACHE_LOOKUPS = Counter("mqgate_cache_lookups_total",
                        "Lookups of worker addresses, templates and model details",
                        ["kind", "result"])
