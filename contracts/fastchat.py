"""FastChat's model-worker and controller payloads, as the wire carries them."""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.openai.common import LogProbs

SepStyleNumbering = Literal["release", "main"]
"""Which FastChat numbers ``sep_style``: fschat 0.2.36, the last release, or git main."""


class ErrorCode(IntEnum):
    """FastChat's error codes (``fastchat.constants.ErrorCode``): the ``error_code`` of a worker
    frame and of FastChat's API errors. A frame whose code is 0 is no error."""

    VALIDATION_TYPE_ERROR = 40001
    INVALID_AUTH_KEY = 40101
    INCORRECT_AUTH_KEY = 40102
    NO_PERMISSION = 40103
    INVALID_MODEL = 40301
    PARAM_OUT_OF_RANGE = 40302
    CONTEXT_OVERFLOW = 40303
    RATE_LIMIT = 42901
    QUOTA_EXCEEDED = 42902
    ENGINE_OVERLOADED = 42903
    INTERNAL_ERROR = 50001
    CUDA_OUT_OF_MEMORY = 50002
    GRADIO_REQUEST_ERROR = 50003
    GRADIO_STREAM_UNKNOWN_ERROR = 50004
    CONTROLLER_NO_WORKER = 50005
    CONTROLLER_WORKER_TIMEOUT = 50006


class Payload(BaseModel):
    """Payloads from peers: unknown keys are ignored, since worker kinds add their own."""

    model_config = ConfigDict(extra="ignore")


# --- worker -------------------------------------------------------------------------------


class WorkerSampling(BaseModel):
    """The sampling parameters a FastChat worker takes, under the names (and with the
    defaults) of OpenAI's and FastChat's APIs: defined once for the job and the worker call.
    A parameter added here travels from the request to the worker by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = 0.7  # FastChat's default, kept for its users
    top_p: float = 1.0
    top_k: int = -1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float | None = None
    seed: int | None = None
    logprobs: int | None = None
    echo: bool = False
    best_of: int | None = None
    use_beam_search: bool | None = None

    def sampling(self) -> dict[str, object]:
        """Just the sampling fields, for building another model that shares them."""
        return {name: getattr(self, name) for name in WorkerSampling.model_fields}


class GenerateParams(WorkerSampling):
    """The ``gen_params`` body of ``/worker_generate_stream``."""

    model: str
    prompt: str
    max_new_tokens: int
    stop: list[str]
    stop_token_ids: list[int] | None = None


class GenerateParamsPayload(GenerateParams):
    """``gen_params`` as a worker takes them from any client: FastChat's API server sends the
    same keys plus its own (``images``, which are ignored here), and leaves out what it does not
    set; what is left out takes the defaults of FastChat's workers."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = ""  # a single-model worker does not need it
    temperature: float = 1.0
    echo: bool = True
    max_new_tokens: int = 256
    stop: list[str] = Field(default_factory=list)

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_may_be_one_string(cls, value: object) -> object:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("max_new_tokens", mode="before")
    @classmethod
    def _max_new_tokens_may_be_null(cls, value: object) -> object:
        return 256 if value is None else value


class WorkerUsage(Payload):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class WorkerFrame(Payload):
    """One ``\\0``-terminated frame of a worker stream. ``text`` is cumulative."""

    text: str = ""
    error_code: int = 0
    usage: WorkerUsage | None = None
    finish_reason: str | None = None
    logprobs: LogProbs | None = None


class ConvTemplate(Payload):
    """A worker's conversation template: FastChat's fields, then optional mqgate extensions.

    ``chat_template`` is the model's own Jinja chat template (with its ``bos_token`` and
    ``eos_token``), sent by mqgate's bundled worker; when present it is what renders the prompt.
    FastChat's API server reads only its own keys, so the extensions do not disturb it.
    """

    name: str = ""
    system_template: str = "{system_message}"
    system_message: str = ""
    roles: list[str] = Field(default_factory=lambda: ["USER", "ASSISTANT"])
    messages: list[list[str | None]] = Field(default_factory=list)
    offset: int = 0
    sep_style: int = 1
    sep: str = "\n"
    sep2: str | None = None
    stop_str: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""

    @field_validator("sep", mode="before")
    @classmethod
    def _sep_may_be_null(cls, value: object) -> object:
        """FastChat's templates for API models have no ``sep``; their style never reads it."""
        return "" if value is None else value

    def stop_strings(self) -> list[str]:
        if self.stop_str is None:
            return []
        return [self.stop_str] if isinstance(self.stop_str, str) else list(self.stop_str)


class ConvTemplateResponse(Payload):
    conv: ConvTemplate


class ModelDetails(Payload):
    context_length: int = 2048


class CountTokenRequest(Payload):
    model: str = ""
    prompt: str


class CountTokenResponse(Payload):
    count: int = 0
    error_code: int = 0


class EmbeddingsWorkerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    input: list[str]
    encoding_format: str | None = None


class EmbeddingsWorkerResponse(Payload):
    embedding: list[list[float]] | None = None
    token_num: int = 0
    text: str | None = None
    error_code: int = 0


class WorkerStatus(Payload):
    model_names: list[str] = Field(default_factory=list)
    speed: int = 1
    queue_length: int = 0


class BundledWorkerStatus(WorkerStatus):
    """The bundled worker's status: FastChat's, and the tokens it generated over its life."""

    generated_tokens: int = 0


# --- controller ---------------------------------------------------------------------------


class RegisterWorkerRequest(Payload):
    worker_name: str
    check_heart_beat: bool = True
    worker_status: WorkerStatus | None = None
    multimodal: bool = False


class HeartBeatRequest(Payload):
    worker_name: str
    queue_length: int = 0


class HeartBeatResponse(Payload):
    exist: bool


class ModelsResponse(Payload):
    models: list[str]


class WorkerAddressRequest(Payload):
    model: str


class WorkerAddressResponse(Payload):
    address: str


class WorkerAddressesResponse(Payload):
    """mqgate's controller extension: every live worker of a model, for client-side balancing,
    with the id of each worker's current registration (a new one every time it registers)."""

    addresses: list[str]
    registrations: dict[str, str] = Field(default_factory=dict)


class WorkerRegistered(Payload):
    """What mqgate's controller announces when a worker registers or registers again: its new
    registration id and every model name it served before or serves now."""

    worker_name: str
    registration: str
    model_names: list[str] = Field(default_factory=list)


# --- FastChat's own API extensions ----------------------------------------------------------


class TokenCheckItem(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    model: str = Field(min_length=1, max_length=256)
    prompt: str
    max_tokens: int = Field(ge=0, le=1_048_576)


class TokenCheckRequest(BaseModel):
    """``POST /api/v1/token_check``."""

    model_config = ConfigDict(strict=True, extra="ignore")

    prompts: list[TokenCheckItem] = Field(min_length=1, max_length=256)


class TokenCheckResult(BaseModel):
    fits: bool
    tokenCount: int  # noqa: N815 - FastChat's field names
    contextLength: int  # noqa: N815


class TokenCheckResponse(BaseModel):
    prompts: list[TokenCheckResult]
