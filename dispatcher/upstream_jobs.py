"""Running a job on an OpenAI-compatible upstream: the client's request, as sent, to the
upstream; the upstream's output, as it comes, to the client.

Every generation is streamed from the upstream, with ``stream_options.include_usage``, so a
cancel or a deadline closes the stream and the engine stops. A streamed job passes each chunk
on unchanged (the usage chunk only when the client asked for it); a job that is not streamed
gets the chunks merged into one response (``upstream_output``). Only ``model`` is changed in
the request (to the upstream's name for it), with ``stream`` and the usage option; an entry's
request defaults fill what the client left out. A failure before any output is retried on
another entry, as worker calls are.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import orjson
from pydantic import JsonValue

from contracts.errors import (
    MqgateError,
    NoWorkerError,
    UnsupportedFeatureError,
    UpstreamRejectedError,
    WorkerConnectError,
    WorkerError,
    WorkerStreamError,
)
from contracts.fastchat import WorkerSampling
from contracts.jobs import Job, JobKind, TokenCount
from contracts.openai.common import Usage
from contracts.upstream import UpstreamEntry
from dispatcher.metrics import WORKER_ERRORS, WORKER_RETRIES
from dispatcher.replies import ReplySink
from dispatcher.retries import retries
from dispatcher.upstream_client import UpstreamClient, UpstreamStream, in_stream_error
from dispatcher.upstream_output import Aggregate, usage_of
from dispatcher.upstreams import UpstreamDirectory

log = logging.getLogger(__name__)
T = TypeVar("T")

_PATHS = {JobKind.CHAT: "/chat/completions", JobKind.COMPLETION: "/completions",
          JobKind.EMBEDDING: "/embeddings"}
# what servers call a model's context length in their /v1/models
_CONTEXT_FIELDS = ("max_model_len", "context_length", "context_window", "max_context_length")


def _typed_body(job: Job) -> dict[str, JsonValue]:
    """A request built from the job's typed fields, for a job that carries no body (sent by
    an api that predates bodies in jobs)."""
    body: dict[str, JsonValue] = {**job.params.model_dump(
        include=set(WorkerSampling.model_fields), exclude_none=True), "n": job.n}
    if job.params.max_tokens is not None:
        body["max_tokens"] = job.params.max_tokens
    if job.params.stop:
        body["stop"] = list(job.params.stop)
    if job.kind is JobKind.CHAT:
        body["messages"] = ([{"role": m.role, "content": m.content} for m in job.messages]
                            if job.messages is not None else job.prompts[0])
    elif job.kind is JobKind.COMPLETION:
        body["prompt"] = list(job.prompts)
    else:
        body = {"input": list(job.prompts)}
    return body


def request_body(job: Job, entry: UpstreamEntry, *, stream: bool) -> dict[str, JsonValue]:
    """What ``entry`` is sent for ``job``: the client's body, ``model`` renamed, the entry's
    defaults where the client set nothing; streamed with usage when ``stream``."""
    body: dict[str, JsonValue] = {**entry.defaults, **(job.body if job.body is not None
                                                       else _typed_body(job))}
    body["model"] = entry.model
    if stream:
        options = body.get("stream_options")
        body["stream"] = True
        body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                  "include_usage": True}
    return body


def _asks_usage(job: Job) -> bool:
    options = (job.body or {}).get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


class _Relay:
    """A streamed job's chunks, on to the sink as they come; the usage is noted, and its
    chunk passed on only when the client asked for it."""

    def __init__(self, sink: ReplySink, *, usage_asked: bool) -> None:
        self._sink = sink
        self._usage_asked = usage_asked
        self.usage: Usage | None = None
        self.output = False
        self.last: bytes = b""

    def add(self, data: bytes, parsed: object) -> None:
        self.last = data
        if isinstance(parsed, dict) and "usage" in parsed:
            self.usage = usage_of(parsed["usage"]) or self.usage
            if not self._usage_asked:
                if not parsed.get("choices"):
                    return
                del parsed["usage"]
                data = orjson.dumps(parsed)
        self.output = True
        self._sink.pass_chunk(data.decode())

    @property
    def finished(self) -> bool:
        try:
            chunk = orjson.loads(self.last) if self.last else None
        except orjson.JSONDecodeError:
            return False
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        return isinstance(choices, list) and bool(choices) and all(
            isinstance(c, dict) and c.get("finish_reason") for c in choices)


class _Merge:
    """A job that is not streamed: the chunks merged into one response."""

    def __init__(self, *, chat: bool) -> None:
        self.aggregate = Aggregate(chat=chat)
        self.output = False

    def add(self, _data: bytes, parsed: object) -> None:
        self.output = True
        self.aggregate.add(parsed)

    @property
    def usage(self) -> Usage | None:
        return usage_of(self.aggregate.usage)

    @property
    def finished(self) -> bool:
        return self.aggregate.finished


def _parse(entry: UpstreamEntry, data: bytes, *, output: bool) -> object:
    """An event's JSON; an error event raises."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise WorkerStreamError(f"upstream {entry.api_base} sent a malformed event") from exc
    if isinstance(parsed, dict) and "error" in parsed and not parsed.get("choices"):
        raise in_stream_error(entry, parsed["error"], output=output)
    return parsed


@dataclass(frozen=True, kw_only=True)
class UpstreamJobs:
    directory: UpstreamDirectory
    client: UpstreamClient
    attempts: int = 3

    async def serves(self, model: str) -> bool:
        """Whether ``model`` is served by upstreams (else by FastChat workers, whose own
        lookups then say what is wrong when the controller cannot be asked)."""
        try:
            return bool(await self.directory.entries(model))
        except MqgateError as exc:
            log.debug("upstreams of %s unknown: %s", model, exc.message)
            return False

    async def run(self, job: Job, sink: ReplySink) -> None:
        """Run ``job`` on its model's upstreams to its final reply."""
        if job.kind is JobKind.EMBEDDING:
            body = await self._with_entry(job, partial(self._embed, job))
            await sink.finish(None, body=body)
        elif job.kind is JobKind.TOKEN_CHECK:
            await sink.finish(None, token_count=await self._with_entry(
                job, partial(self._count, job)))
        else:
            stream = await self._with_entry(job, partial(self._generate, job, sink))
            await sink.finish(stream.usage, body=stream.aggregate.body()
                              if isinstance(stream, _Merge) else None)

    async def _with_entry(self, job: Job, call: Callable[[UpstreamEntry], Awaitable[T]]) -> T:
        """``call(entry)`` on an entry of the job's model; retried on others while the
        failure is retryable (it came before any output). An upstream's 429 with no other
        entry to try is the client's answer."""
        tried: set[str] = set()
        try:
            return await self._try_entry(job, call, tried)
        except MqgateError as exc:
            if not exc.retryable or self.attempts <= 1:
                raise
            last = exc
        try:
            async for attempt in retries(job, self.attempts):
                with attempt:
                    WORKER_RETRIES.inc()
                    try:
                        return await self._try_entry(job, call, tried)
                    except UpstreamRejectedError as exc:
                        last = exc
                        raise
        except NoWorkerError:
            if isinstance(last, UpstreamRejectedError):
                raise last from None
            raise
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _try_entry(self, job: Job, call: Callable[[UpstreamEntry], Awaitable[T]],
                         tried: set[str]) -> T:
        async with self.directory.slot(job.model, tried) as entry:
            tried.add(entry.id)
            try:
                return await call(entry)
            except WorkerConnectError as exc:
                WORKER_ERRORS.labels(code=exc.code).inc()
                self.directory.unreachable(entry)
                raise
            except WorkerError as exc:
                WORKER_ERRORS.labels(code=exc.code).inc()
                raise

    async def _generate(self, job: Job, sink: ReplySink,
                        entry: UpstreamEntry) -> _Relay | _Merge:
        key = self.directory.keys.key(entry)
        body = request_body(job, entry, stream=True)
        into: _Relay | _Merge = (_Relay(sink, usage_asked=_asks_usage(job)) if job.stream
                                 else _Merge(chat=job.kind is JobKind.CHAT))
        async with self.client.stream(entry, key, _PATHS[job.kind], body) as stream:
            await self._read(entry, stream, into)
        return into

    @staticmethod
    async def _read(entry: UpstreamEntry, stream: UpstreamStream,
                    into: _Relay | _Merge) -> None:
        relaying = isinstance(into, _Relay)
        async for data in stream.events():
            if relaying and b'"error"' not in data and b'"usage"' not in data:
                into.add(data, None)  # the hot path: passed on unread
            else:
                into.add(data, _parse(entry, data, output=into.output))
        if not stream.done and not into.finished:
            cls = WorkerStreamError if into.output else WorkerConnectError
            raise cls(f"upstream {entry.api_base} ended its stream before the answer did")

    async def _embed(self, job: Job, entry: UpstreamEntry) -> str:
        key = self.directory.keys.key(entry)
        raw = await self.client.call(entry, key, "POST", "/embeddings",
                                     request_body(job, entry, stream=False))
        return raw.decode()

    async def _count(self, job: Job, entry: UpstreamEntry) -> TokenCount:
        """FastChat's token check: the prompt's tokens as the upstream counts them (a
        one-token completion's usage), and the context length it gives."""
        key = self.directory.keys.key(entry)
        context = entry.context_length or await self._context_length(entry, key)
        raw = await self.client.call(entry, key, "POST", "/completions", {
            "model": entry.model, "prompt": job.prompts[0], "max_tokens": 1})
        answer = _json(raw, entry)
        usage = usage_of(answer.get("usage")) if isinstance(answer, dict) else None
        if usage is None:
            raise WorkerError(f"upstream {entry.api_base} did not count the prompt's tokens")
        return TokenCount(count=usage.prompt_tokens, context_length=context)

    async def _context_length(self, entry: UpstreamEntry, key: str | None) -> int:
        """The context length the upstream's /models gives (vLLM's ``max_model_len``)."""
        listed = _json(await self.client.call(entry, key, "GET", "/models"), entry)
        for card in listed.get("data", []) if isinstance(listed, dict) else []:
            if not isinstance(card, dict) or card.get("id") != entry.model:
                continue
            meta = card.get("meta")
            train = meta.get("n_ctx_train") if isinstance(meta, dict) else None
            for value in (*(card.get(f) for f in _CONTEXT_FIELDS), train):
                if isinstance(value, int) and value > 0:
                    return value
        raise UnsupportedFeatureError(
            f"the upstream of model '{entry.model_name}' does not say its context length; "
            "give it as model_info.max_input_tokens in the config file")


def _json(raw: bytes, entry: UpstreamEntry) -> object:
    """An upstream's answer as JSON, or a 502 when it is not."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise WorkerError(f"upstream {entry.api_base} answered with something not JSON") from exc
