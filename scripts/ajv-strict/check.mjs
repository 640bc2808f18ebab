// Compiles every schema of the built server's tools/list with Ajv in strict
// mode (draft 2020-12), the validator the MCP TypeScript SDK uses: unknown
// keywords or formats, `required` names that are not properties, and union
// types fail. Usage: node check.mjs path/to/heygen-video-mcp
// (after `npm ci` in this folder). Exits non-zero on any failure.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const bin = process.argv[2];
if (!bin) {
  console.error("usage: node check.mjs path/to/heygen-video-mcp");
  process.exit(2);
}

const home = mkdtempSync(join(tmpdir(), "ajv-strict-"));
const env = { ...process.env, HOME: home, XDG_DATA_HOME: home };
delete env.HEYGEN_API_KEY;
const child = spawn(bin, [], { env, stdio: ["pipe", "pipe", "ignore"] });
const timer = setTimeout(() => {
  console.error("no tools/list answer within 30 s");
  child.kill();
  process.exit(1);
}, 30_000);

const send = (msg) => child.stdin.write(JSON.stringify(msg) + "\n");
const lines = createInterface({ input: child.stdout });
const waiting = new Map();
lines.on("line", (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return;
  }
  const resolve = waiting.get(msg.id);
  if (resolve) {
    waiting.delete(msg.id);
    resolve(msg);
  }
});
const request = (id, method, params) =>
  new Promise((resolve) => {
    waiting.set(id, resolve);
    send({ jsonrpc: "2.0", id, method, params });
  });

await request(1, "initialize", {
  protocolVersion: "2025-11-25",
  capabilities: {},
  clientInfo: { name: "ajv-strict", version: "0" },
});
send({ jsonrpc: "2.0", method: "notifications/initialized" });
const reply = await request(2, "tools/list", {});
clearTimeout(timer);
child.stdin.end();
child.kill();
rmSync(home, { recursive: true, force: true });

const tools = reply.result?.tools ?? [];
if (tools.length === 0) {
  console.error("tools/list returned no tools:", JSON.stringify(reply));
  process.exit(1);
}
let failed = 0;
let checked = 0;
for (const tool of tools) {
  for (const which of ["inputSchema", "outputSchema"]) {
    const schema = tool[which];
    if (schema === undefined) continue;
    // A fresh instance per schema, strict in every respect.
    const ajv = new Ajv2020({ strict: true, strictRequired: true, allErrors: true });
    addFormats(ajv);
    try {
      ajv.compile(schema);
      checked += 1;
    } catch (e) {
      failed += 1;
      console.error(`FAIL ${tool.name} ${which}: ${e.message}`);
    }
  }
}
console.log(`ajv strict: ${checked} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
