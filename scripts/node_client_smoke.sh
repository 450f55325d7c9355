#!/usr/bin/env bash
# Builds the Node client, checks its generated code matches protos/, and runs its smoke test
# against a real `provider-router serve` (the zero-config mock) on a free port.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd clients/node && npm install --silent --no-audit --no-fund)
clients/node/node_modules/.bin/buf generate
if ! git diff --quiet -- clients/node/src/gen; then
  echo "clients/node/src/gen differs from protos/: run 'npm run generate' in clients/node" >&2
  exit 1
fi
(cd clients/node && npm run --silent build)

port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
state=$(mktemp -d)
env -u OPENAI_API_KEY -u ANTHROPIC_API_KEY -u GEMINI_API_KEY -u GOOGLE_API_KEY \
    -u OPENROUTER_API_KEY -u OLLAMA_HOST \
    PROVIDER_ROUTER_STATE_REGISTRY_FILE="$state/registry.json" \
    provider-router serve --listen "127.0.0.1:$port" >"$state/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$state"' EXIT
for _ in $(seq 50); do
  provider-router health --target "127.0.0.1:$port" >/dev/null 2>&1 && break
  sleep 0.2
done
node clients/node/dist/smoke.js "http://127.0.0.1:$port"
