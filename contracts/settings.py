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
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    redis_url: str = "redis://127.0.0.1:6379/0"
    controller_url: str = "http://127.0.0.1:21001"
    namespace: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "mqgate"

    # api
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    request_timeout: float = Field(default=600.0, gt=0)
    stream_idle_timeout: float = Field(default=120.0, gt=0)
    keepalive_interval: float = Field(default=15.0, gt=0)
    publish_timeout: float = Field(default=2.0, gt=0)
    no_dispatcher_timeout: float = Field(default=15.0, ge=0)
    reply_buffer: int = Field(default=4096, ge=16)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # broker
    queue_type: Literal["classic", "quorum"] = "classic"
    queue_max_length: int = Field(default=1000, ge=1)
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

    @field_validator("api_keys", "cors_origins", "worker_allowlist", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def topology(self) -> Topology:
        return Topology(namespace=self.namespace)
