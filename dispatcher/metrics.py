"""Prometheus metrics of a dispatcher process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS = Counter("mqgate_dispatcher_jobs_total", "Jobs finished, by kind, model and outcome",
               ["kind", "model", "outcome"])
IN_FLIGHT = Gauge("mqgate_dispatcher_jobs_in_flight", "Jobs this dispatcher is running")
QUEUED_SECONDS = Histogram("mqgate_dispatcher_queued_seconds",
                           "Time from a job's submission to a dispatcher taking it, by model "
                           "and service tier", ["model", "tier"],
                           buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                                    10, 30, 60))
WORKER_ERRORS = Counter("mqgate_dispatcher_worker_errors_total",
                        "Failed worker calls, by error code", ["code"])
WORKER_RETRIES = Counter("mqgate_dispatcher_worker_retries_total",
                         "Worker calls retried on another worker")
CANCELLATIONS = Counter("mqgate_dispatcher_cancellations_total",
                        "Running jobs stopped because their client went away")
EXPIRED = Counter("mqgate_dispatcher_expired_total",
                  "Jobs dropped because their deadline passed before they ran")
SLOT_WAITING = Gauge("mqgate_dispatcher_slot_waiting",
                     "Worker calls waiting for a free slot on a worker of their model",
                     ["model"])
SLOT_WAITS = Counter("mqgate_dispatcher_slot_waits_total",
                     "Worker calls that found every worker of their model busy and waited",
                     ["model"])
