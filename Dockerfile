# Slim, non-root image of the service: `reco serve` by default; `reco train ...` for the nightly job.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY recommender recommender
COPY training training
COPY api api
COPY cache cache
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1 RECO_DATA_DIR=/data RECO_HOST=0.0.0.0 RECO_PORT=8000
RUN useradd --create-home --uid 10001 reco && mkdir -p /data && chown reco /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER reco
WORKDIR /home/reco
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"RECO_PORT\", \"8000\")}/healthz', timeout=2)" || exit 1
ENTRYPOINT ["reco"]
CMD ["serve"]
