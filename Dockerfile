# syntax=docker/dockerfile:1
# Provider Router image: build a wheel, install it into a venv, ship the venv on a slim base.
#   docker build -t provider-router .
#   docker run --rm -p 50051:50051 provider-router            # mock provider, no keys needed
#   docker run --rm -p 50051:50051 -v "$PWD/config.toml:/etc/provider-router/config.toml:ro" \
#     -e OPENAI_API_KEY provider-router serve --config /etc/provider-router/config.toml
# Stop with `docker stop -t 30`: the server drains on SIGTERM (drain_delay + grace, 12 s by
# default), longer than docker's 10 s default.

# ---- builder: wheel of the project, installed with its dependencies into /opt/venv -----------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# .dockerignore lets through only the build inputs: pyproject.toml, README.md, server/ and
# clients/python/.
COPY . .
RUN python -m venv /opt/venv \
 && python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
 && /opt/venv/bin/pip install --no-cache-dir /dist/provider_router-*.whl \
 && /opt/venv/bin/provider-router --help > /dev/null

# ---- probe: official grpc_health_probe release, checked against its published sha256 --------
FROM python:3.11-slim AS probe

# Bump both together; the checksum is the release's checksums.txt line for
# grpc_health_probe-linux-amd64.
ARG GRPC_HEALTH_PROBE_VERSION=v0.4.34
ARG GRPC_HEALTH_PROBE_SHA256=3ddaf85583613c97693e9b8aaa251dac07e73e366e159a7ccadbcf553117fcef

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# python:slim has no curl or wget; urllib does the download with the image's CA bundle.
RUN python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
      "https://github.com/grpc-ecosystem/grpc-health-probe/releases/download/${GRPC_HEALTH_PROBE_VERSION}/grpc_health_probe-linux-amd64" \
      /grpc_health_probe \
 && echo "${GRPC_HEALTH_PROBE_SHA256}  /grpc_health_probe" | sha256sum --check --strict - \
 && chmod 0755 /grpc_health_probe

# ---- runtime ----------------------------------------------------------------------------------
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="provider-router" \
      org.opencontainers.image.description="gRPC router for LLM chat requests across providers" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH="/opt/venv/bin:${PATH}"

# Numeric UID/GID so Kubernetes runAsNonRoot can verify the user. Its home is the state
# directory, so the default registry file (~/.local/state/...) also lands on the volume.
RUN groupadd --system --gid 10001 provider-router \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/provider-router --shell /usr/sbin/nologin provider-router \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/provider-router \
 && install -d -m 0755 /etc/provider-router

COPY --from=builder /opt/venv /opt/venv
COPY --from=probe /grpc_health_probe /usr/local/bin/grpc_health_probe

USER 10001:10001
WORKDIR /var/lib/provider-router

EXPOSE 50051

# Checks the overall server status ("" service); assumes the default listen port 50051.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["grpc_health_probe", "-addr=127.0.0.1:50051", "-connect-timeout=2s", "-rpc-timeout=2s"]

ENTRYPOINT ["provider-router"]
CMD ["serve"]
