"""OpenAI-compatible upstreams (vLLM, SGLang, TGI, llama.cpp's server, Ollama, another mqgate):
the config file that names them, in LiteLLM's ``model_list`` format, and the entries the
controller hands to dispatchers.

An entry never carries an API key. It carries a ``KeyRef``: the name of the environment
variable the key is read from (LiteLLM's ``os.environ/NAME``), or, for a key written in the
file, a digest that finds it in the dispatcher's own copy of the file.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

ENV_PREFIX = "os.environ/"
# LiteLLM's providers whose calls are OpenAI's API to the api_base, as mqgate makes them
PROVIDERS = ("openai", "hosted_vllm")
DEFAULT_API_BASE = "https://api.openai.com/v1"

# litellm_params keys that configure the call; any other key is a request default (LiteLLM
# sends them with every request that does not set them itself)
_CALL_KEYS = frozenset({
    "model", "api_base", "base_url", "api_key", "rpm", "tpm", "max_parallel_requests", "weight",
    "timeout", "stream_timeout", "organization", "extra_headers", "extra_body",
    # LiteLLM's own bookkeeping, meaningless to the upstream
    "max_retries", "order", "tags", "custom_llm_provider", "input_cost_per_token",
    "output_cost_per_token", "input_cost_per_second", "output_cost_per_second",
    "use_in_pass_through", "use_litellm_proxy", "merge_reasoning_content_in_choices",
    "litellm_credential_name", "mock_response", "region_name", "api_version",
    "configurable_clientside_auth_params", "cache_control_injection_points",
    "drop_params", "additional_drop_params", "model_info",
})


def key_digest(key: str) -> str:
    """How an entry names a key written in the config file, without carrying it."""
    return hashlib.sha256(key.encode()).hexdigest()[:24]


class ConfigError(ValueError):
    """The config file cannot be used; the message names the entry and says why."""


# --- the file ------------------------------------------------------------------------------


class LiteLLMParams(BaseModel):
    """An entry's ``litellm_params``. Keys that are not a call setting are request defaults."""

    model_config = ConfigDict(extra="allow", frozen=True)

    model: Annotated[str, Field(min_length=1)]
    api_base: str | None = None
    base_url: str | None = None  # LiteLLM takes this spelling too
    api_key: str | None = None
    rpm: Annotated[int, Field(ge=0)] | None = None
    tpm: Annotated[int, Field(ge=0)] | None = None
    max_parallel_requests: Annotated[int, Field(ge=1)] | None = None
    weight: Annotated[float, Field(gt=0)] | None = None
    timeout: Annotated[float, Field(gt=0)] | None = None
    stream_timeout: Annotated[float, Field(gt=0)] | None = None
    organization: str | None = None
    extra_headers: dict[str, str] | None = None
    extra_body: dict[str, JsonValue] | None = None

    @field_validator("rpm", "tpm", "max_parallel_requests", mode="before")
    @classmethod
    def _whole(cls, value: object) -> object:
        """LiteLLM configs often write limits as strings or floats."""
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def defaults(self) -> dict[str, JsonValue]:
        """Request parameters this entry sets for requests that leave them out."""
        extra: dict[str, JsonValue] = dict(self.extra_body or {})
        for key, value in (self.model_extra or {}).items():
            if key not in _CALL_KEYS:
                extra[key] = value
        return extra


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    max_input_tokens: Annotated[int, Field(ge=1)] | None = None


class ModelListEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    model_name: Annotated[str, Field(min_length=1, max_length=256)]
    litellm_params: LiteLLMParams
    model_info: ModelInfo | None = None


class ConfigFile(BaseModel):
    """The file: ``model_list`` is read; LiteLLM's other sections (``litellm_settings``,
    ``router_settings``, ``general_settings``) are left to LiteLLM."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model_list: list[JsonValue] = Field(default_factory=list)

    def entries(self) -> list[ModelListEntry]:
        """Each entry validated, or ConfigError naming the first that is not usable."""
        found = []
        for position, raw in enumerate(self.model_list):
            name = raw.get("model_name") if isinstance(raw, dict) else None
            where = f"model_list[{position}]" + (f" ({name!r})" if name else "")
            try:
                entry = ModelListEntry.model_validate(raw)
            except ValidationError as exc:
                problem = exc.errors(include_url=False)[0]
                field = ".".join(str(p) for p in problem["loc"])
                raise ConfigError(f"{where}: {field}: {problem['msg']}") from None
            provider, _, served = entry.litellm_params.model.partition("/")
            if not served or provider not in PROVIDERS:
                raise ConfigError(
                    f"{where}: model {entry.litellm_params.model!r} is not an OpenAI-compatible "
                    f"entry; mqgate serves {', '.join(p + '/' for p in PROVIDERS)} entries "
                    "(give vLLM, SGLang, TGI, llama.cpp, Ollama or LM Studio as openai/<name> "
                    "with their api_base)")
            if "*" in entry.model_name or "*" in served:
                raise ConfigError(f"{where}: wildcard entries are not supported; name each "
                                  "model")
            found.append(entry)
        return found


# --- what dispatchers get ------------------------------------------------------------------


class KeyRef(BaseModel):
    """Where a dispatcher finds an entry's API key: its environment variable ``env``, or the
    key written in its own copy of the config file whose digest is ``digest``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    env: str | None = None
    digest: str | None = None

    @classmethod
    def of(cls, api_key: str | None) -> KeyRef | None:
        """The reference to a key as the file gives it (``os.environ/NAME`` or the key)."""
        if not api_key:
            return None
        if api_key.startswith(ENV_PREFIX):
            return cls(env=api_key.removeprefix(ENV_PREFIX))
        return cls(digest=key_digest(api_key))


class UpstreamEntry(BaseModel):
    """One deployment of a model: an OpenAI-compatible server and the name it serves the
    model under."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    model_name: str
    api_base: str
    model: str  # the upstream's name for it (the part after the provider prefix)
    key: KeyRef | None = None
    rpm: int | None = None
    tpm: int | None = None
    weight: float | None = None
    max_parallel_requests: int | None = None
    timeout: float | None = None
    context_length: int | None = None  # model_info.max_input_tokens, when the file says
    headers: dict[str, str] = Field(default_factory=dict)
    defaults: dict[str, JsonValue] = Field(default_factory=dict)

    @property
    def share(self) -> float:
        """Its weight among the model's entries, as LiteLLM's default routing weighs them:
        ``weight``, else ``rpm``, else ``tpm``, else 1."""
        for value in (self.weight, self.rpm, self.tpm):
            if value:
                return float(value)
        return 1.0


class UpstreamsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str


class UpstreamsResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    entries: list[UpstreamEntry]
