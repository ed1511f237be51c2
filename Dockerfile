# cdr-stream container image.
#
#   docker build -t cdr-stream:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --read-only -v "$PWD/config.toml:/etc/cdr-stream/config.toml:ro" cdr-stream:0.1.0
#
# Dependencies come from requirements.lock (runtime) and requirements-build.lock (the build backend), every
# version pinned with its hashes; refresh both with dev/ops/lock. The build stage compiles the C fast path
# (gcc, and the base's Python headers); the runtime stage holds only the virtualenv: no compiler, no pip
# cache, no source tree.

# The same base in both stages: the virtualenv links to its interpreter. Pin by digest too
# (python:3.11.14-slim-trixie@sha256:...) where your registry policy asks for it.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
WORKDIR /src
COPY requirements.lock requirements-build.lock ./
# A C compiler for the fast path's extension (hatch_build.py); like everything in this stage, it stays out
# of the image. The distribution's current gcc: a compiler pin would break with each base update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
# Two virtualenvs: /opt/build builds the wheel and is thrown away; /opt/venv is what the image runs.
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --only-binary=:all: -r requirements-build.lock \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md hatch_build.py ./
COPY schemas/ schemas/
COPY cdr_stream/ cdr_stream/
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-deps /wheels/cdr_stream-*.whl \
    && /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/venv/lib \
    && /opt/venv/bin/python -c "from cdr_stream.records import fastpath; assert fastpath.native, 'no C fast path'" \
    && /opt/venv/bin/python -c "from cdr_stream.kafka import batches; assert batches.native, 'no C record batches'" \
    && /opt/venv/bin/cdr-stream --version

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="cdr-stream" \
      org.opencontainers.image.description="Streams call detail records from a billing feed into Kafka, exactly once" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"
# A numeric user, so that Kubernetes can check runAsNonRoot; it owns nothing and has no home.
RUN groupadd --system --gid 10001 cdr-stream \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin cdr-stream
COPY --from=build /opt/venv /opt/venv
# No bytecode writes (the build stage compiled every .pyc, valid whatever the file times): the root
# filesystem can be read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CDR_STREAM_CONFIG=/etc/cdr-stream/config.toml
USER 10001:10001
# /metrics, /healthz, /readyz (http_port).
EXPOSE 8080
# Exec form: cdr-stream is PID 1 and gets SIGTERM itself; it drains its transaction and exits 0.
ENTRYPOINT ["cdr-stream"]
CMD ["run"]
