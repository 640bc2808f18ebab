#!/usr/bin/env bash
# Checks everything a one-click install depends on, without publishing
# anything. Network: only the npm registry (mcpb CLI) and the crates.io index.
#   1. the MCP Bundle manifest passes the official `mcpb validate`;
#   2. manifest.json, Cargo.toml and server.json carry one version, and
#      server.json has the fields the MCP Registry (schema 2025-12-11) requires;
#   3. the crate packages and builds from its own .crate (`cargo publish --dry-run`).
# MCPB_DIR (default: a folder under ${TMPDIR:-/tmp}) keeps the installed CLI
# between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

MCPB_VERSION=2.1.2
MCPB_DIR=${MCPB_DIR:-${TMPDIR:-/tmp}/heygen-video-mcp-mcpb-$MCPB_VERSION}

echo "== mcpb $MCPB_VERSION validate packaging/mcpb/manifest.json"
if [ ! -x "$MCPB_DIR/node_modules/.bin/mcpb" ]; then
  npm install --no-audit --no-fund --loglevel=error --prefix "$MCPB_DIR" "@anthropic-ai/mcpb@$MCPB_VERSION"
fi
"$MCPB_DIR/node_modules/.bin/mcpb" validate packaging/mcpb/manifest.json

echo "== versions and server.json fields"
python3 - <<'EOF'
import json, re, sys

errors = []
def check(ok, msg):
    if not ok:
        errors.append(msg)

cargo = open("Cargo.toml", encoding="utf-8").read()
m = re.search(r'^version = "([^"]+)"', cargo, re.M)
crate_version = m.group(1) if m else None
crate_repo = re.search(r'^repository = "([^"]+)"', cargo, re.M)
crate_repo = crate_repo.group(1) if crate_repo else None
manifest = json.load(open("packaging/mcpb/manifest.json", encoding="utf-8"))
server = json.load(open("server.json", encoding="utf-8"))

check(crate_version is not None, "Cargo.toml has no version")
check(manifest.get("version") == crate_version,
      f"manifest.json version {manifest.get('version')} != Cargo.toml {crate_version}")
check(server.get("version") == crate_version,
      f"server.json version {server.get('version')} != Cargo.toml {crate_version}")

# ServerDetail (2025-12-11): required name, description, version.
check(server.get("$schema", "").startswith("https://static.modelcontextprotocol.io/schemas/"),
      "server.json $schema is not a registry schema URL")
name = server.get("name", "")
check(re.fullmatch(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+", name) is not None and 3 <= len(name) <= 200,
      f"server.json name {name!r} is not reverse-DNS 'namespace/server'")
desc = server.get("description", "")
check(1 <= len(desc) <= 100, f"server.json description is {len(desc)} characters (1 to 100 allowed)")
repo = server.get("repository", {})
check(bool(repo.get("url")) and bool(repo.get("source")), "server.json repository needs url and source")
check(repo.get("url") == crate_repo,
      f"server.json repository {repo.get('url')} != Cargo.toml repository {crate_repo}")
check(manifest.get("repository", {}).get("url") == crate_repo,
      "manifest.json repository.url != Cargo.toml repository")
if name.startswith("io.github."):
    owner = name[len("io.github."):].split("/")[0]
    check(repo.get("url", "").startswith(f"https://github.com/{owner}/"),
          f"server.json name owner {owner!r} does not own repository {repo.get('url')}")

packages = server.get("packages", [])
check(packages, "server.json lists no packages")
kinds = {}
for i, p in enumerate(packages):
    where = f"packages[{i}]"
    for field in ("registryType", "identifier", "transport"):
        check(field in p, f"{where} lacks {field}")
    check(p.get("transport", {}).get("type") in ("stdio", "streamable-http", "sse"),
          f"{where}.transport.type is not stdio/streamable-http/sse")
    if "version" in p:
        check(p["version"] == crate_version, f"{where}.version {p['version']} != {crate_version}")
    for e in p.get("environmentVariables", []):
        check(bool(e.get("name")), f"{where} has an environment variable without a name")
    kinds[p.get("registryType")] = p
cargo_pkg = kinds.get("cargo")
check(cargo_pkg is not None, "server.json has no cargo package")
if cargo_pkg:
    check(cargo_pkg.get("identifier") == "heygen-video-mcp", "cargo identifier is not the crate name")
    check(cargo_pkg.get("registryBaseUrl", "https://crates.io") == "https://crates.io",
          "cargo registryBaseUrl must be https://crates.io")
mcpb = kinds.get("mcpb")
check(mcpb is not None, "server.json has no mcpb package")
if mcpb:
    url = mcpb.get("identifier", "")
    check(re.fullmatch(r"[a-f0-9]{64}", mcpb.get("fileSha256", "")) is not None,
          "mcpb fileSha256 must be 64 lowercase hex digits")
    check(url.startswith(("https://github.com/", "https://gitlab.com/")) and "mcp" in url,
          "mcpb identifier must be a GitHub/GitLab release URL containing 'mcp'")
    check(f"/v{crate_version}/" in url and f"-{crate_version}-" in url,
          f"mcpb identifier does not name version {crate_version}")
for i, r in enumerate(server.get("remotes", [])):
    where = f"remotes[{i}]"
    check(r.get("type") in ("streamable-http", "sse"), f"{where}.type must be streamable-http or sse")
    check(re.fullmatch(r"https?://\S+", r.get("url", "")) is not None, f"{where}.url is not an http(s) URL")
    for h in r.get("headers", []):
        check(bool(h.get("name")), f"{where} has a header without a name")

readme = open("README.md", encoding="utf-8").read()
visible = re.sub(r"<!--.*?-->", "", readme, flags=re.S)
check(f"mcp-name: {name}" in visible,
      f"README.md lacks the visible line 'mcp-name: {name}' (crates.io drops HTML comments)")

if errors:
    for e in errors:
        print("error:", e, file=sys.stderr)
    sys.exit(1)
print(f"ok: version {crate_version}, {name}, packages {sorted(kinds)}")
EOF

echo "== cargo publish --dry-run --locked"
cargo package --locked --allow-dirty --list >/dev/null
cargo publish --dry-run --locked --allow-dirty

echo "== packaging checks finished in $(( $(date +%s) - start )) s"
