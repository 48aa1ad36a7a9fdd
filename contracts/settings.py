"""The one settings model, read from ``MQGATE_*`` environment variables by every process."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.fastchat import SepStyleNumbering
from contracts.topology import Topology


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MQGATE_", extra="ignore", frozen=True)

    # where things are
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"  # or one per cluster node, by commas
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis behind Sentinel: the sentinels (host:port) and the name they know the primary by;
    # the URL then gives only the credentials and the database
    redis_sentinels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    redis_primary_name: str = "mymaster"
    redis_sentinel_password: str = ""
    controller_url: str = "http://127.0.0.1:21001"
    # OpenAI-compatible upstreams, in LiteLLM's model_list format: read by the controller
    # (entries) and by dispatchers (keys written in the file)
    config: str = ""
    namespace: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "mqgate"

    # api
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    request_timeout: float = Field(default=600.0, gt=0)
    flex_timeout: float = Field(default=1800.0, gt=0)  # the deadline of service_tier "flex"
    stream_idle_timeout: float = Field(default=120.0, gt=0)
    keepalive_interval: float = Field(default=15.0, gt=0)
    publish_timeout: float = Field(default=2.0, gt=0)
    no_dispatcher_timeout: float = Field(default=15.0, ge=0)
    reply_buffer: int = Field(default=4096, ge=16)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # broker
    queue_type: Literal["classic", "quorum"] = "classic"
    queue_max_length: int = Field(default=1000, ge=1)  # per model lane
    lane_expires: float = Field(default=3600.0, gt=0)  # an unused lane is deleted after this
    delivery_limit: int = Field(default=3, ge=0)
    reconnect_interval: float = Field(default=1.0, gt=0)
    heartbeat: int = Field(default=10, ge=0)

    # dispatcher
    concurrency: int = Field(default=64, ge=1)
    shutdown_grace: float = Field(default=30.0, ge=0)
    stream_flush_interval: float = Field(default=0.05, ge=0, le=1)
    cache_ttl: float = Field(default=30.0, gt=0)
    cache_max_stale: float = Field(default=300.0, ge=0)
    template_ttl: float = Field(default=600.0, gt=0)
    redis_timeout: float = Field(default=0.1, gt=0)
    controller_timeout: float = Field(default=2.0, gt=0)
    worker_connect_timeout: float = Field(default=2.0, gt=0)
    worker_read_timeout: float = Field(default=100.0, gt=0)
    worker_attempts: int = Field(default=3, ge=1)
    embedding_batch_size: int = Field(default=4, ge=1)
    unhealthy_worker_ttl: float = Field(default=30.0, ge=0)
    worker_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    # generations one worker runs at once, across every dispatcher (FastChat's
    # limit_worker_concurrency); per model where a model's workers take more or fewer
    worker_concurrency: int = Field(default=5, ge=1)
    worker_concurrency_by_model: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict)
    lease_ttl: float = Field(default=15.0, gt=0)  # a dead dispatcher's slots come back after it
    # whose sep_style numbers FastChat workers send, where the template's name does not tell:
    # "release" (fschat 0.2.36, what pip installs) or "main" (FastChat's git main)
    fastchat_sep_styles: SepStyleNumbering = "release"

    # controller
    heart_beat_expiration: float = Field(default=90.0, gt=0)
    dispatch_method: Literal["shortest_queue", "lottery"] = "shortest_queue"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning",
                       "error"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    metrics_port_span: int = Field(default=32, ge=1, le=1024)

    @field_validator("worker_concurrency_by_model", mode="before")
    @classmethod
    def _model_limits(cls, value: object) -> object:
        """``model=N,other=M``: the last ``=`` splits, so model names may contain ``=``."""
        if not isinstance(value, str):
            return value
        limits: dict[str, object] = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            model, sep, limit = part.rpartition("=")
            if not sep or not model.strip():
                raise ValueError(f"expected model=limit, got {part!r}")
            limits[model.strip()] = limit.strip()
        return limits

    def worker_limit(self, model: str) -> int:
        """Concurrent generations one worker of ``model`` takes."""
        return self.worker_concurrency_by_model.get(model, self.worker_concurrency)

    @field_validator("api_keys", "cors_origins", "worker_allowlist", "redis_sentinels",
                     mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _host_and_port(cls, value: list[str]) -> list[str]:
        for address in value:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port, got {address!r}")
        return value

    @field_validator("amqp_url")
    @classmethod
    def _some_url(cls, value: str) -> str:
        if not any(part.strip() for part in value.split(",")):
            raise ValueError("no broker URL given")
        return value

    @property
    def amqp_urls(self) -> list[str]:
        """The broker's nodes as given: ``MQGATE_AMQP_URL`` split at its commas."""
        return [part.strip() for part in self.amqp_url.split(",") if part.strip()]

    @property
    def topology(self) -> Topology:
        return Topology(namespace=self.namespace)
