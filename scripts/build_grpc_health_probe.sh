#!/usr/bin/env bash
# Builds grpc_health_probe offline from Debian's Go packages, for checking the service by hand
# on a dev machine (`grpc_health_probe -addr=127.0.0.1:50051`). The container image does not
# use this: the Dockerfile downloads the official pinned release instead.
#
# Why this route: the machines reach Debian's archive but not GitHub or the Go module proxy,
# so the build uses Debian bookworm's golang-go (1.19) and golang-google-grpc-dev (grpc-go
# 1.33) in classic GOPATH mode (GO111MODULE=off, GOPATH=/usr/share/gocode).
#
# Source: no third-party code is kept in this repo. Provide upstream main.go yourself, from
# github.com/grpc-ecosystem/grpc-health-probe (Apache-2.0), revision 3831c88d787598175191cdd04f34753a7fec66ba.
# That revision uses grpc.WithInsecure/DialContext, which grpc-go 1.33 still has; newer
# revisions need insecure.NewCredentials, ALTS and SPIFFE, which bookworm lacks.
# Sessions with the search tool can fetch it with read_file(repo=grpc-ecosystem/grpc-health-probe,
# path=main.go, commit=<the one above>) and save the text as-is (8398 characters).
#
# Usage: scripts/build_grpc_health_probe.sh [MAIN_GO] [OUT]
#   MAIN_GO  default /work/tools/src/grpc-health-probe/main.go
#   OUT      default /work/tools/bin/grpc_health_probe
#   VERIFY=1 also checks the exit codes against a throwaway grpc.aio health server
#            (needs grpcio-health-checking in $PYTHON, default /work/venv/bin/python;
#            uses port $VERIFY_PORT, default 50071).
# Exit codes of the result: 0 SERVING, 1 bad flags, 2 connection failure, 3 RPC failure,
# 4 not SERVING.
set -euo pipefail

MAIN_GO=${1:-/work/tools/src/grpc-health-probe/main.go}
OUT=${2:-/work/tools/bin/grpc_health_probe}
# sha256 of the main.go at the revision above, as built and tested; set EXPECTED_SHA256= to skip.
EXPECTED_SHA256=${EXPECTED_SHA256-0d2dc2194872a667691c6921e467515d2aae1f76f646b9c5d8b270e0b501aa9f}

if [ ! -f "$MAIN_GO" ]; then
  echo "error: $MAIN_GO not found; see the header of this script for where to get it" >&2
  exit 1
fi
if [ -n "$EXPECTED_SHA256" ]; then
  echo "$EXPECTED_SHA256  $MAIN_GO" | sha256sum -c -
fi

if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/google.golang.org/grpc ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    golang-go golang-google-grpc-dev
fi

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
cp "$MAIN_GO" "$workdir/main.go"
mkdir -p "$(dirname "$OUT")"

(
  cd "$workdir"
  export GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS='' GOPROXY=off CGO_ENABLED=0
  export GOCACHE="$workdir/gocache"
  go build -trimpath -ldflags="-s -w" -o "$OUT" .
)

"$OUT" >/dev/null 2>&1 && rc=0 || rc=$?
if [ "$rc" -ne 1 ]; then
  echo "error: $OUT without -addr should exit 1 (invalid flags), got $rc" >&2
  exit 1
fi
echo "built $OUT ($(go version | cut -d' ' -f3), grpc-go $(dpkg-query -W -f='${Version}' golang-google-grpc-dev))"

[ "${VERIFY:-0}" = 1 ] || exit 0

PYTHON=${PYTHON:-/work/venv/bin/python}
PORT=${VERIFY_PORT:-50071}
ctl="$workdir/ctl"
mkfifo "$ctl"
# The server sets "" SERVING, then NOT_SERVING after reading a line, then exits after another.
cat >"$workdir/health_server.py" <<'PY'
import asyncio, sys
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

async def main(port):
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    print("NOT_SERVING", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    await server.stop(None)

asyncio.run(main(int(sys.argv[1])))
PY
"$PYTHON" "$workdir/health_server.py" "$PORT" <"$ctl" >"$workdir/server.log" 2>&1 &
server_pid=$!
exec 3>"$ctl"
wait_for() { for _ in $(seq 100); do grep -q "$1" "$workdir/server.log" && return 0; sleep 0.1; done
             echo "error: health server did not print $1" >&2; cat "$workdir/server.log" >&2; exit 1; }
check() { # check WANT ARGS...
  local want=$1 got; shift
  "$OUT" "$@" >/dev/null 2>&1 && got=0 || got=$?
  echo "exit $got (want $want): grpc_health_probe $*"
  [ "$got" -eq "$want" ] || failed=1
}
failed=0
wait_for READY
check 0 "-addr=127.0.0.1:$PORT"
echo >&3; wait_for NOT_SERVING
check 4 "-addr=127.0.0.1:$PORT"
check 3 "-addr=127.0.0.1:$PORT" -service=no.such.Service
echo >&3; exec 3>&-; wait "$server_pid"
check 2 "-addr=127.0.0.1:$PORT" -connect-timeout=300ms
check 1 -connect-timeout=1s
exit "$failed"
