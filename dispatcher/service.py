"""Running one job against the workers. Imports no broker: replies go to a ReplySink."""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from contracts.errors import (
    ContextLengthError,
    DeadlineExceededError,
    MqgateError,
    WorkerConnectError,
    WorkerError,
)
from contracts.fastchat import (
    ConvTemplate,
    EmbeddingsWorkerRequest,
    EmbeddingsWorkerResponse,
    ErrorCode,
    GenerateParams,
    SepStyleNumbering,
    WorkerFrame,
)
from contracts.jobs import Job, JobKind, TokenCount
from contracts.openai.common import LogProbs, Usage
from dispatcher.capacity import WorkerCapacity
from dispatcher.deltas import DeltaTracker
from dispatcher.forwarder import WorkerClient
from dispatcher.limits import max_new_tokens
from dispatcher.metrics import WORKER_ERRORS, WORKER_RETRIES
from dispatcher.prompt import merge_stops, render_prompt
from dispatcher.replies import ReplySink
from dispatcher.resolver import WorkerResolver
from dispatcher.retries import retries
from dispatcher.unsupported import refuse_unsupported
from dispatcher.upstream_jobs import UpstreamJobs

log = logging.getLogger(__name__)
T = TypeVar("T")
PromptBuilder = Callable[[ConvTemplate], str]


def pack_vector(vector: list[float]) -> str:
    """A vector as base64 of little-endian float32: OpenAI's base64 encoding, and a quarter
    of the JSON text on the wire."""
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def _raw_prompt(prompt: str, _template: ConvTemplate) -> str:
    return prompt


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if isinstance(exc, MqgateError):
            return exc
    return group.exceptions[0]


@dataclass(slots=True)
class _Choice:
    index: int
    prompt_index: int
    build_prompt: PromptBuilder
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, kw_only=True)
class DispatchService:
    resolver: WorkerResolver
    workers: WorkerClient
    capacity: WorkerCapacity
    attempts: int = 3
    embedding_batch_size: int = 4
    sep_styles: SepStyleNumbering = "release"  # whose sep_style numbers the workers send
    upstreams: UpstreamJobs | None = None  # models served by OpenAI-compatible upstreams

    async def run(self, job: Job, sink: ReplySink) -> None:
        """Run ``job`` to its final reply; raises MqgateError for the caller to report."""
        try:
            async with asyncio.timeout(job.remaining()):
                if self.upstreams is not None and await self.upstreams.serves(job.model):
                    await self.upstreams.run(job, sink)
                    return
                refuse_unsupported(job)  # what FastChat workers cannot do is never dropped
                if job.kind is JobKind.EMBEDDING:
                    await self._embed(job, sink)
                elif job.kind is JobKind.TOKEN_CHECK:
                    await self._count(job, sink)
                else:
                    await self._generate(job, sink)
        except TimeoutError as exc:
            raise DeadlineExceededError("the request's deadline passed") from exc
        except BaseExceptionGroup as group:
            raise _first_error(group) from None

    async def _with_worker(self, job: Job, call: Callable[[str], Awaitable[T]]) -> T:
        """``call(address)`` on a worker of the job's model; retried elsewhere while retryable.

        The first try runs without the retry machinery (it is what almost every job needs);
        tenacity takes over after a retryable failure."""
        tried: set[str] = set()
        try:
            return await self._try_worker(job, call, tried)
        except MqgateError as exc:
            if not exc.retryable or self.attempts <= 1:
                raise
        async for attempt in retries(job, self.attempts):
            with attempt:
                WORKER_RETRIES.inc()
                return await self._try_worker(job, call, tried)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _try_worker(self, job: Job, call: Callable[[str], Awaitable[T]],
                          tried: set[str]) -> T:
        # a slot on the worker for the call's length; counting tokens queues at no worker
        metered = job.kind is not JobKind.TOKEN_CHECK
        async with self.capacity.slot(job.model, tried, metered=metered) as address:
            tried.add(address)
            try:
                return await call(address)
            except WorkerConnectError as exc:
                WORKER_ERRORS.labels(code=exc.code).inc()
                await self.resolver.evict(job.model, address)
                raise
            except WorkerError as exc:
                WORKER_ERRORS.labels(code=exc.code).inc()
                raise

    # --- generation -------------------------------------------------------------------------

    def _choices(self, job: Job) -> list[_Choice]:
        builders: list[PromptBuilder]
        if job.kind is JobKind.CHAT and job.messages is not None:
            builders = [partial(render_prompt, messages=job.messages,
                                numbering=self.sep_styles)]
        else:
            builders = [partial(_raw_prompt, p) for p in job.prompts]
        return [_Choice(index=p * job.n + j, prompt_index=p, build_prompt=build)
                for p, build in enumerate(builders) for j in range(job.n)]

    async def _generate(self, job: Job, sink: ReplySink) -> None:
        choices = self._choices(job)
        if len(choices) == 1:
            await self._with_worker(job, partial(self._stream_choice, job, choices[0],
                                                 sink=sink))
        else:
            async with asyncio.TaskGroup() as group:
                for choice in choices:
                    group.create_task(self._with_worker(
                        job, partial(self._stream_choice, job, choice, sink=sink)))
        prompt_tokens: dict[int, int] = {}
        completion_tokens = 0
        for choice in choices:
            prompt_tokens[choice.prompt_index] = max(prompt_tokens.get(choice.prompt_index, 0),
                                                     choice.prompt_tokens)
            completion_tokens += choice.completion_tokens
        prompt_total = sum(prompt_tokens.values())
        await sink.finish(Usage(prompt_tokens=prompt_total, completion_tokens=completion_tokens,
                                total_tokens=prompt_total + completion_tokens))

    async def _params(self, job: Job, choice: _Choice, address: str) -> GenerateParams:
        template = await self.resolver.template(address, job.model)
        prompt = choice.build_prompt(template)
        p = job.params
        room = await max_new_tokens(self.resolver, self.workers, address=address,
                                    model=job.model, prompt=prompt, requested=p.max_tokens)
        return GenerateParams(
            **p.sampling(), model=job.model, prompt=prompt, max_new_tokens=room,
            stop=merge_stops(p.stop, template), stop_token_ids=template.stop_token_ids)

    async def _stream_choice(self, job: Job, choice: _Choice, address: str, *,
                             sink: ReplySink) -> None:
        params = await self._params(job, choice, address)
        async with self.workers.generate_stream(address, params) as stream:
            # a non-streamed answer needs only the last frame, unless logprobs must be
            # gathered from frames that carry them
            latest_only = not job.stream and job.params.logprobs is None
            await self._relay(choice, stream.frames(latest_only=latest_only), sink, job.stream)
            await stream.drain()

    async def _relay(self, choice: _Choice, frames: AsyncIterator[WorkerFrame], sink: ReplySink,
                     stream: bool) -> None:
        """Worker frames to the sink: every delta for a stream; for a non-streamed job only
        the last frame matters, since frames carry the text so far."""
        tracker = DeltaTracker()
        last: WorkerFrame | None = None
        logprobs: LogProbs | None = None  # some workers leave them off the final frame
        async for frame in frames:
            if frame.error_code:
                cls = (ContextLengthError if frame.error_code == ErrorCode.CONTEXT_OVERFLOW
                       else WorkerError)
                raise cls(f"the worker failed (code {frame.error_code}): {frame.text.strip()}")
            last = frame
            logprobs = frame.logprobs or logprobs
            if stream and (delta := tracker.update(frame)) is not None:
                sink.push(choice.index, *delta)
            if frame.finish_reason is not None:
                break
        if last is not None and last.usage is not None:
            choice.prompt_tokens = last.usage.prompt_tokens
            choice.completion_tokens = last.usage.completion_tokens
        if not stream and last is not None:
            whole = last if last.logprobs or not logprobs else last.model_copy(
                update={"logprobs": logprobs})
            if (delta := tracker.update(whole)) is not None:
                sink.push(choice.index, *delta)
        if last is None or last.finish_reason is None:  # some workers end without one
            sink.push(choice.index, finish_reason="stop")

    # --- token check ------------------------------------------------------------------------

    async def _count(self, job: Job, sink: ReplySink) -> None:
        async def count(address: str) -> TokenCount:
            context = await self.resolver.context_length(address, job.model)
            tokens = await self.workers.count_tokens(address, job.model, job.prompts[0])
            return TokenCount(count=tokens, context_length=context)

        await sink.finish(None, token_count=await self._with_worker(job, count))

    # --- embeddings -------------------------------------------------------------------------

    async def _embed_batch(self, request: EmbeddingsWorkerRequest,
                           address: str) -> EmbeddingsWorkerResponse:
        return await self.workers.embeddings(address, request)

    async def _embed(self, job: Job, sink: ReplySink) -> None:
        size = self.embedding_batch_size
        batches = [job.prompts[i:i + size] for i in range(0, len(job.prompts), size)]
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._with_worker(job, partial(
                self._embed_batch, EmbeddingsWorkerRequest(model=job.model, input=batch))))
                for batch in batches]
        vectors: list[str] = []
        tokens = 0
        for batch, task in zip(batches, tasks, strict=True):
            answer = task.result()
            if answer.embedding is None or len(answer.embedding) != len(batch):
                raise WorkerError("the worker returned the wrong number of embeddings")
            vectors.extend(pack_vector(v) for v in answer.embedding)
            tokens += answer.token_num
        await sink.finish(Usage(prompt_tokens=tokens, total_tokens=tokens), embeddings=vectors)
