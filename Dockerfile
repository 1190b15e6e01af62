# One image for every Accessa process; the command picks which one:
#   docker run accessa                      -> `accessa run api` (the default CMD)
#   docker run accessa run parser|chunker|embedder|finalizer|mocks
#   docker run accessa migrate              /  docker run accessa infra topics
# Containers talk to external Kafka/Postgres (ACCESSA_KAFKA_BOOTSTRAP_SERVERS,
# ACCESSA_DATABASE_URL); `accessa infra up` (embedded broker + Postgres) is for laptops only.

# --- build: install the project and its dependencies into a self-contained venv
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first, so code edits do not reinstall them (the layer is cached on pyproject).
COPY pyproject.toml constraints.txt ./
RUN mkdir -p accessa && touch accessa/__init__.py \
    && /opt/venv/bin/pip install -c constraints.txt . \
    && /opt/venv/bin/pip uninstall -y accessa-ingest
COPY accessa ./accessa
COPY schemas ./schemas
COPY producer_api ./producer_api
COPY consumers ./consumers
COPY mocks ./mocks
RUN /opt/venv/bin/pip install --no-deps -c constraints.txt . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# --- runtime: no compilers, no source tree, a non-root user
FROM python:3.11-slim
ARG UID=10001
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    ACCESSA_HOME=/var/lib/accessa \
    ACCESSA_HEALTH_HOST=0.0.0.0 \
    ACCESSA_API_HOST=0.0.0.0 \
    ACCESSA_LOG_JSON=true
# English data for the parser's OCR of scanned pages (libtesseract itself comes with tesserocr).
RUN apt-get update && apt-get install -y --no-install-recommends tesseract-ocr-eng \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid ${UID} accessa \
    && useradd --system --uid ${UID} --gid accessa --no-create-home --shell /usr/sbin/nologin accessa \
    && mkdir -p /var/lib/accessa/storage \
    && chown -R accessa:accessa /var/lib/accessa
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/accessa
USER ${UID}:${UID}
# API 8000; /health, /ready and /metrics of parser, chunker, embedder, finalizer.
EXPOSE 8000 9101 9102 9103 9104
ENTRYPOINT ["accessa"]
CMD ["run", "api"]
