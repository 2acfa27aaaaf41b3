# One image for every leadwire service; the command picks the service
# (docker-compose.yml: python -m services.<name>). Runtime dependencies only
# (requirements.runtime.lock: the pinned closure of pyproject's dependencies, no test or
# lint tools), run as an unprivileged user, with a healthcheck on the ops listener.

FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/leadwire
COPY requirements.runtime.lock ./
RUN /opt/leadwire/bin/pip install --no-cache-dir -r requirements.runtime.lock
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
COPY cli ./cli
RUN /opt/leadwire/bin/pip install --no-cache-dir --no-deps . \
    && /opt/leadwire/bin/pip uninstall -y pip

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin leadwire
COPY --from=build /opt/leadwire /opt/leadwire
ENV PATH=/opt/leadwire/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LEADWIRE_LOG_FORMAT=json \
    LEADWIRE_HTTP_HOST=0.0.0.0 \
    HEALTHCHECK_URL=http://127.0.0.1:9080/readyz
WORKDIR /tmp
USER 10001:10001
# The gateway's ops listener by default; each service sets HEALTHCHECK_URL to its
# own (docker-compose.yml overrides the check per service the same way).
HEALTHCHECK --interval=10s --timeout=4s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=3)"]
CMD ["python", "-m", "services.ingest"]
