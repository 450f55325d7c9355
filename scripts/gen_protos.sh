#!/usr/bin/env bash
# Regenerates the committed Python stubs (and .pyi types) from protos/.
# CI runs this and fails if the result differs from what is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc \
  --proto_path=protos \
  --python_out=server \
  --grpc_python_out=server \
  --mypy_out=server \
  --mypy_grpc_out=server \
  protos/provider_router/v1/*.proto
touch server/provider_router/v1/__init__.py
