# syntax=docker/dockerfile:1
# One image for both roles of rocky-operator; the command selects the role:
#   operator (default):  rocky-operator run ...     (the Helm chart's Deployment)
#   runner:              rocky-runner               (RockyRun spec.runner.command, one pod per table)
#
# Build:  docker build -t rocky-operator:dev .
#         docker build --build-arg EXTRAS=operator -t rocky-operator:duckdb-only .
# Per-adapter runner images (issue 15 goal 3; same code, only that adapter's extra; the pod's
# command is rocky-runner; sizes in docs/runner.md "Lean connector imports"):
#         docker build --build-arg EXTRAS=snowflake -t rocky-runner:snowflake .
#         docker build --build-arg EXTRAS=bigquery -t rocky-runner:bigquery .
#         docker build --build-arg EXTRAS=databricks -t rocky-runner:databricks .
# (a DuckDB runner is the duckdb-only image above: EXTRAS must name at least one extra)
#
# Both stages use the same python:<version>-slim base, so the virtualenv's interpreter path is
# identical in the builder and the final image. Dependencies are installed from wheels only
# (--only-binary=:all:; every one ships them), so no stage needs a compiler and the final image
# has none.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS builder

# Extras of the rocky-operator distribution to install: the operator (kopf, Kubernetes client,
# metrics) and the warehouse connectors the runner uses. DuckDB is in the base install.
ARG EXTRAS=operator,databricks,snowflake,bigquery

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv "$VIRTUAL_ENV"

WORKDIR /src

# Dependency layer: only pyproject.toml and constraints.txt, with empty stand-ins for the two
# import packages, so this (slow) layer is rebuilt only when the dependencies change, not on
# every source edit. constraints.txt pins every dependency to the version the tests ran with
# (scripts/update-constraints writes it from the tested venv; .ci/run installs with it too).
# DL3013 (pin versions): the pins are constraints.txt's; the argument here is the local
# project, not a package name.
COPY pyproject.toml constraints.txt ./
# hadolint ignore=DL3013
RUN mkdir -p operator/rocky_operator runner/rocky_runner \
    && touch README.md operator/rocky_operator/__init__.py runner/rocky_runner/__init__.py \
    && pip install --no-cache-dir --only-binary=:all: -c constraints.txt ".[${EXTRAS}]" \
    && pip uninstall --yes rocky-operator \
    && rm -rf operator runner README.md

# Source layer: the project itself, without resolving dependencies again.
COPY README.md ./
COPY operator ./operator
COPY runner ./runner
RUN pip install --no-cache-dir --no-deps . \
    && python -m compileall -q "$VIRTUAL_ENV" \
    && rocky-operator --help >/dev/null \
    && python -c "import rocky_runner.main" \
    && IFS=, && for extra in ${EXTRAS}; do \
         case "$extra" in databricks|snowflake|bigquery) \
           python -c "import rocky_runner.adapters.${extra}" ;; esac; \
       done


FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="rocky-operator" \
      org.opencontainers.image.description="Rocky per-table replication on Kubernetes: operator and runner" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/rocky-dev/rocky-operator"

# Non-root user with a fixed uid/gid: the Helm chart's securityContext runs as 10001.
RUN groupadd --system --gid 10001 rocky \
    && useradd --system --uid 10001 --gid rocky --home-dir /home/rocky --create-home \
       --shell /usr/sbin/nologin rocky

COPY --from=builder /opt/venv /opt/venv

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /home/rocky

# 8080: the operator's /metrics and /healthz.
EXPOSE 8080

# The operator by default; runner pods override the command with `rocky-runner`.
CMD ["rocky-operator", "run"]
