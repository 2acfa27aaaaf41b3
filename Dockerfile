# One image for every leadwire service; the command picks the service.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml ./
RUN pip install --no-cache-dir -r requirements.lock
COPY shared ./shared
COPY services ./services
COPY cli ./cli
COPY infra ./infra
RUN pip install --no-cache-dir --no-deps -e .
ENV LEADWIRE_LOG_FORMAT=json LEADWIRE_HTTP_HOST=0.0.0.0
CMD ["python", "-m", "services.ingest"]
