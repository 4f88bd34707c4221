# scenestream worker image: one image for every stage and for the CLI.
#
#   docker build -t scenestream:latest .
#   docker run --rm -e SCENESTREAM_BROKER=kafka://kafka:9092 scenestream:latest run --stages tokenizer
#
# All configuration is SCENESTREAM_ environment variables (`scenestream settings` lists them).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Metadata first, then the source trees that pyproject.toml maps into the package.
COPY pyproject.toml README.md ./
COPY scenestream/ scenestream/
COPY agents/ agents/
COPY schemas/ schemas/
COPY topics/ topics/
COPY ops/ ops/
COPY data/ data/
COPY registers/ registers/

RUN pip install . \
    && scenestream --help >/dev/null

# Unprivileged runtime user; /data holds the worker state (SCENESTREAM_DATA_DIR).
RUN groupadd --system --gid 10001 scenestream \
    && useradd --system --uid 10001 --gid scenestream --home-dir /home/scenestream \
       --create-home --shell /usr/sbin/nologin scenestream \
    && mkdir -p /data \
    && chown scenestream:scenestream /data

ENV SCENESTREAM_DATA_DIR=/data
VOLUME ["/data"]

USER scenestream

ENTRYPOINT ["scenestream"]
CMD ["run"]
