# One image for every mqgate process: docker run mqgate {serve|api|dispatcher|controller|worker}
FROM python:3.11.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md mqgate_cli.py mqgate_serve.py ./
COPY contracts ./contracts
COPY runtime ./runtime
COPY discovery ./discovery
COPY api ./api
COPY consumers ./consumers
COPY dispatcher ./dispatcher
COPY controller ./controller
COPY workers ./workers
# "local" brings the bundled models; build with --build-arg EXTRAS= for a gateway-only image
ARG EXTRAS=local
# llama.cpp is compiled here. GGML_NATIVE=OFF keeps the build machine's CPU out of the binary
# (no -march=native): wherever it is built, the image runs on arm64, and on x86-64 CPUs with
# AVX2, FMA and F16C (Intel Haswell, AMD Excavator and Zen onwards; not some Atom, Celeron and
# Pentium models). For those, add -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF
# -DGGML_BMI2=OFF to --build-arg LLAMA_CMAKE_ARGS.
ARG LLAMA_CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"
ENV CMAKE_ARGS="${LLAMA_CMAKE_ARGS}"
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

FROM python:3.11.11-slim-bookworm
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
