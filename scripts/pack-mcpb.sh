#!/usr/bin/env bash
# Builds the release binary and packs it into an MCP Bundle for this machine:
#   dist/heygen-video-mcp-<version>-<os>-<arch>.mcpb
# (<os>/<arch> as Node names them: linux-x64, darwin-arm64, win32-x64, ...).
# Claude Desktop installs the file with a double click.
#
# Needs: cargo, node/npm (the official `mcpb` CLI runs through npx, pinned
# below; set MCPB to a command to use another copy, e.g. MCPB=/opt/mcpb/bin/mcpb).
# The bundle's manifest is packaging/mcpb/manifest.json; its version must equal
# the one in Cargo.toml. The staged copy lists only this machine's platform, so
# a Linux bundle is never offered to macOS or Windows.
set -euo pipefail
cd "$(dirname "$0")/.."

MCPB_VERSION=2.1.2
read -r -a MCPB_CMD <<<"${MCPB:-npx --yes @anthropic-ai/mcpb@$MCPB_VERSION}"

die() { echo "pack-mcpb: $*" >&2; exit 1; }
command -v cargo >/dev/null || die "cargo not found; install Rust from https://rustup.rs"
command -v node >/dev/null || die "node not found; the mcpb CLI needs Node.js 18 or newer"

crate_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$crate_version" ] || die "no version found in Cargo.toml"
manifest_version=$(node -p 'require("./packaging/mcpb/manifest.json").version')
[ "$manifest_version" = "$crate_version" ] ||
  die "packaging/mcpb/manifest.json has version $manifest_version but Cargo.toml has $crate_version; make them equal"

platform=$(node -p 'process.platform')
arch=$(node -p 'process.arch')
exe=""
[ "$platform" = "win32" ] && exe=".exe"

echo "== cargo build --release --locked"
cargo build --release --locked
target_dir=${CARGO_TARGET_DIR:-target}
binary="$target_dir/release/heygen-video-mcp$exe"
[ -x "$binary" ] || die "the build did not produce $binary"

stage="dist/stage-$platform-$arch"
out="dist/heygen-video-mcp-$crate_version-$platform-$arch.mcpb"
rm -rf "$stage" "$out"
mkdir -p "$stage/server"
cp "$binary" "$stage/server/heygen-video-mcp$exe"
chmod 755 "$stage/server/heygen-video-mcp$exe"
cp packaging/mcpb/icon.png LICENSE "$stage/"
# The template lists every platform the code supports; this bundle carries one
# binary, so its manifest lists only that platform (and the .exe on Windows).
PLATFORM="$platform" EXE="$exe" node -e '
  const fs = require("fs");
  const m = JSON.parse(fs.readFileSync("packaging/mcpb/manifest.json", "utf8"));
  m.compatibility = { ...(m.compatibility || {}), platforms: [process.env.PLATFORM] };
  m.server.entry_point = "server/heygen-video-mcp" + process.env.EXE;
  fs.writeFileSync(process.argv[1], JSON.stringify(m, null, 2) + "\n");
' "$stage/manifest.json"

echo "== mcpb validate"
"${MCPB_CMD[@]}" validate "$stage/manifest.json"
echo "== mcpb pack"
"${MCPB_CMD[@]}" pack "$stage" "$out"
rm -rf "$stage"

[ -s "$out" ] || die "mcpb pack did not write $out"
sha=$(node -e '
  const c = require("crypto"), fs = require("fs");
  console.log(c.createHash("sha256").update(fs.readFileSync(process.argv[1])).digest("hex"));
' "$out")
size=$(node -p "require('fs').statSync('$out').size")
echo "bundle: $out ($size bytes)"
echo "sha256: $sha"
echo "server.json: set the mcpb package's fileSha256 to $sha once this file is the release asset"
