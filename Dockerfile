# syntax=docker/dockerfile:1
# The controller image: `docker build -t telco-intent/controller:0.1.0 .` (hack/kind-up.sh does it).
#
# Base: the official Python image at a full version tag. For reproducible builds pin its digest
# too (resolve it with `docker buildx imagetools inspect python:3.11.14-slim-bookworm` and build
# with --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# -- build: the project's wheel and every dependency's wheel, installed into a virtualenv --------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
COPY devicesim ./devicesim
COPY localcluster ./localcluster
# Dependencies ship manylinux wheels for amd64 and arm64, so no compiler is needed here either.
# pip byte-compiles while installing, so nothing needs writing at run time (read-only root fs).
RUN pip wheel --wheel-dir /wheels . \
 && python -m venv /opt/telco-intent \
 && /opt/telco-intent/bin/pip install --no-index --find-links /wheels telco-intent \
 && /opt/telco-intent/bin/pip uninstall -y pip

# -- runtime: the virtualenv only; no pip, no compilers, non-root ------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="telco-intent controller" \
      org.opencontainers.image.description="Kopf controller keeping telco BSS and OSS (gNMI) in agreement" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# A named user (uid/gid 10001, as the chart's securityContext): Kopf and getpass need a passwd entry.
# The base image's own pip/setuptools/wheel are build tools the controller never uses.
RUN groupadd --system --gid 10001 telco \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin telco \
 && python -m pip uninstall -y --disable-pip-version-check pip setuptools wheel
COPY --from=build /opt/telco-intent /opt/telco-intent
ENV PATH=/opt/telco-intent/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["python", "-m", "controller"]
CMD ["run"]
