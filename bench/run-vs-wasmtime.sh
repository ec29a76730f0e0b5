#!/usr/bin/env bash
# `jobhost run` of a component against `wasmtime run` of the same component, side by
# side in one run, with hyperfine (Debian's `hyperfine` package):
#
#   bench/run-vs-wasmtime.sh JOBHOST WASMTIME COMPONENT [ARG]...
#
# Three commands, each warmed first so that every one measures its steady state:
#   server    `jobhost run --server URL COMPONENT -- ARGS` against a `jobhost serve`
#             started here on a temporary data dir (the component already installed:
#             run sends its digest, the server answers that it has it);
#   embedded  `jobhost run` with no server answering (an embedded server on a
#             temporary data dir, its compiled components in a warm XDG cache);
#   wasmtime  `wasmtime run -C cache=y COMPONENT ARGS` with a warm cache.
# Output goes to /dev/null for all three. Figures and the machine go to BENCHMARKS.md.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 JOBHOST WASMTIME COMPONENT [ARG]..." >&2
    exit 2
fi
jobhost=$(realpath "$1") wasmtime=$(realpath "$2") component=$(realpath "$3")
shift 3
runs=${RUNS:-30}
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
"$jobhost" serve --data-dir "$work/data" --listen "127.0.0.1:$port" 2>"$work/serve.log" &
server=$!
for _ in $(seq 100); do
    curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' \
        -d '{"jsonrpc":"2.0","id":1,"method":"system.health"}' "$url" && break
    sleep 0.1
done

quote() { printf '%q ' "$@"; }
args=$(quote "$@")
on_server="$(quote "$jobhost") run --server $url --token-file $work/data/token $(quote "$component") -- $args"
# Port 1 on loopback: nothing answers, so `run` starts its embedded server.
embedded="env XDG_CACHE_HOME=$work/cache $(quote "$jobhost") run --server http://127.0.0.1:1 $(quote "$component") -- $args"
plain="$(quote "$wasmtime") run -C cache=y -C cache-config=$work/wasmtime-cache.toml $(quote "$component") $args"
printf '[cache]\ndirectory = "%s"\n' "$work/wasmtime-cache" >"$work/wasmtime-cache.toml"

hyperfine -N --warmup 3 --runs "$runs" --output null --export-json "$work/result.json" \
    -n server "$on_server" -n embedded "$embedded" -n wasmtime "$plain"
python3 - "$work/result.json" <<'EOF'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
base = results["wasmtime"]["median"]
for name, r in results.items():
    print(f"{name:<9} median {r['median'] * 1000:8.1f} ms   mean {r['mean'] * 1000:8.1f} ms"
          f"   ratio to wasmtime {r['median'] / base:5.2f}x")
EOF
