#!/usr/bin/env bash
# Browser test of the inline video player (tests/player_browser.rs): installs
# what it needs when absent, then runs the test with PLAYER_TEST_REQUIRED=1 so
# that a missing tool fails instead of skipping.
#   - Chromium: Debian's package (/usr/bin/chromium), via apt-get when root.
#   - Node.js: must be on PATH (apt-get install nodejs npm when root).
#   - playwright-core: npm ci into scripts/player/node_modules (package-lock.json).
# Usage: scripts/player-test.sh [--screenshot docs/player.png]
set -euo pipefail
cd "$(dirname "$0")/.."

shot=""
if [[ "${1:-}" == "--screenshot" ]]; then
  shot="$(pwd)/${2:?--screenshot needs a path}"
fi

need_apt=()
[[ -x "${CHROMIUM:-/usr/bin/chromium}" ]] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "== apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
  else
    echo "missing: ${need_apt[*]} (install them, or run as root with apt-get)" >&2
    exit 1
  fi
fi

if [[ ! -f scripts/player/node_modules/playwright-core/package.json ]]; then
  echo "== npm ci (playwright-core) in scripts/player"
  npm ci --prefix scripts/player --no-audit --no-fund --loglevel=error
fi

echo "== cargo test --test player_browser"
start=$(date +%s)
env PLAYER_TEST_REQUIRED=1 ${shot:+"PLAYER_SCREENSHOT=$shot"} \
  cargo test --locked --test player_browser -- --nocapture
echo "== player test finished in $(( $(date +%s) - start )) s"
