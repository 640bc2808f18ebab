// Browser test of the inline video player (MCP Apps view).
//
// Reads the view from a running server (MCP_URL, e.g. the binary with
// `--http 127.0.0.1:0 --simulate --simulate-render-seconds 4`), serves a small
// host page on 127.0.0.1 that loads it in a sandboxed iframe under the CSP the
// resource declares, and drives headless Chromium through:
//   1. a real create_video result: the view shows render progress, polls
//      get_video_status through the host, and then plays the simulator's MP4
//      (readyState >= 2, videoWidth > 0);
//   2. a completed result whose links expired: the expiry message, no player;
//   3. a failed result: the error and the advice.
// A screenshot of step 1 must not be blank (PLAYER_SCREENSHOT saves it).
// Playwright launches Chromium with a fresh temporary profile each run.
// Prints one JSON line per step; exits non-zero on the first failure.
import { createServer } from "node:http";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const MCP_URL = process.env.MCP_URL;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOT = process.env.PLAYER_SCREENSHOT || "";
const STEP_MS = Number(process.env.PLAYER_STEP_MS || 45000);
const PLAYER_URI = "ui://heygen-video-mcp/player.html";

if (!MCP_URL) {
  console.error("MCP_URL is not set (the server's http://127.0.0.1:PORT/mcp)");
  process.exit(2);
}

const say = (step, detail) => console.log(JSON.stringify({ step, ...detail }));
function fail(msg) {
  throw new Error(msg);
}

// --- MCP over HTTP: stateless 2026-07-28 requests -------------------------
let nextId = 1;
async function mcp(method, params = {}) {
  const body = {
    jsonrpc: "2.0",
    id: nextId++,
    method,
    params: {
      ...params,
      _meta: {
        ...(params._meta || {}),
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { name: "player-test-host", version: "1.0.0" },
      },
    },
  };
  const headers = {
    "Content-Type": "application/json",
    Accept: "application/json, text/event-stream",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": method,
  };
  if (method === "tools/call") headers["Mcp-Name"] = params.name;
  if (method === "resources/read") headers["Mcp-Name"] = params.uri;
  const r = await fetch(MCP_URL, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(STEP_MS),
  });
  const raw = await r.text();
  let msg;
  if ((r.headers.get("content-type") || "").includes("text/event-stream")) {
    const datas = raw
      .split(/\r?\n/)
      .filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).trim())
      .filter(Boolean)
      .map((d) => JSON.parse(d));
    msg = datas.find((d) => d.id === body.id);
  } else {
    msg = JSON.parse(raw);
  }
  if (!msg) fail(`${method}: no answer (HTTP ${r.status}): ${raw.slice(0, 300)}`);
  return msg;
}
async function mcpResult(method, params) {
  const m = await mcp(method, params);
  if (m.error) fail(`${method}: ${JSON.stringify(m.error)}`);
  return m.result;
}

// --- The host page's own origin (127.0.0.1) with the tools/call proxy -----
const hostHtml = readFileSync(join(here, "host.html"), "utf8");
const calls = [];
const server = createServer(async (req, res) => {
  if (req.method === "GET" && (req.url === "/" || req.url === "/host.html")) {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(hostHtml);
    return;
  }
  if (req.method === "POST" && req.url === "/proxy") {
    let data = "";
    for await (const chunk of req) data += chunk;
    try {
      const { method, params } = JSON.parse(data);
      if (method !== "tools/call") throw new Error(`the host proxies tools/call only, not ${method}`);
      calls.push(params.name);
      const m = await mcp(method, params);
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify(m.error ? { error: m.error } : { result: m.result }));
    } catch (e) {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: { code: -32603, message: String(e.message || e) } }));
    }
    return;
  }
  res.writeHead(404);
  res.end();
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const hostUrl = `http://127.0.0.1:${server.address().port}/`;

let browser;
let exitCode = 0;
const started = Date.now();
try {
  // The view and the CSP it asks for.
  const read = await mcpResult("resources/read", { uri: PLAYER_URI });
  const contents = read.contents && read.contents[0];
  if (!contents || contents.mimeType !== "text/html;profile=mcp-app") fail(`resources/read: ${JSON.stringify(read).slice(0, 300)}`);
  const cspMeta = (contents._meta && contents._meta.ui && contents._meta.ui.csp) || {};
  const html = contents.text;
  say("resource", { bytes: html.length, resourceDomains: cspMeta.resourceDomains });

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: STEP_MS,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 640, height: 560 }, deviceScaleFactor: 1 });
  page.setDefaultTimeout(STEP_MS);
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(hostUrl);
  const view = page.frameLocator("iframe");
  const state = () => view.locator("body").getAttribute("data-state");

  // 1. A real create_video, rendering, then the finished video.
  const args = { prompt: "A presenter says hello from the simulator" };
  const created = await mcpResult("tools/call", { name: "create_video", arguments: args });
  if (created.isError) fail(`create_video failed: ${JSON.stringify(created.content)}`);
  const policy = await page.evaluate(([h, c]) => window.hostOpen(h, c, "create_video"), [html, cspMeta]);
  await page.evaluate(([a, r]) => window.hostDeliver(a, r), [args, created]);
  await view.locator('body[data-state="rendering"]').waitFor();
  const progressText = await view.locator("#status").textContent();
  if (!/Rendering… \d+%/.test(progressText)) fail(`no progress shown: ${progressText}`);
  const barVisible = await view.locator("#bar").isVisible();
  if (!barVisible) fail("the progress bar is hidden while rendering");
  say("rendering", { status: progressText, csp: policy });

  await view.locator('body[data-state="playing"]').waitFor({ timeout: STEP_MS });
  const video = await view.locator("video").evaluate((v) => ({
    readyState: v.readyState,
    videoWidth: v.videoWidth,
    videoHeight: v.videoHeight,
    duration: v.duration,
    src: v.currentSrc,
  }));
  if (!(video.readyState >= 2 && video.videoWidth > 0)) fail(`the video did not load: ${JSON.stringify(video)}`);
  if (!calls.includes("get_video_status")) fail(`the view never polled get_video_status: ${calls}`);
  const detail = await view.locator("#detail").textContent();
  if (!/valid until/.test(detail)) fail(`no expiry shown: ${detail}`);
  const saveVisible = await view.locator("#save").isVisible();
  if (!saveVisible) fail("no save button");
  say("playing", { video, detail, polled: calls.filter((c) => c === "get_video_status").length });

  const png = await page.screenshot({ type: "png" });
  // Not blank: many distinct colours across the image.
  const colours = await page.evaluate(async (b64) => {
    const img = new Image();
    img.src = "data:image/png;base64," + b64;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width;
    c.height = img.height;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < d.length; i += 4 * 7) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    return seen.size;
  }, png.toString("base64"));
  if (png.length < 10000 || colours < 64) fail(`the screenshot looks blank: ${png.length} bytes, ${colours} colours`);
  if (SHOT) writeFileSync(SHOT, png);
  say("screenshot", { bytes: png.length, colours, saved: SHOT || null });

  // The final status result, reused for the synthetic cases.
  const final = await mcpResult("tools/call", { name: "get_video_status", arguments: { task_id: created.structuredContent.task_id } });
  if (final.structuredContent.status !== "completed") fail(`not completed: ${final.structuredContent.status}`);
  const link = (final.content || []).find((c) => c.type === "resource_link");
  if (!link || link.mimeType !== "video/mp4") fail(`no video/mp4 resource_link: ${JSON.stringify(final.content)}`);
  if (final.content[0].type !== "text") fail("the text is not first");

  // 2. Reopened after the links expired.
  const past = new Date(Date.now() - 3600 * 1000);
  const expired = structuredClone(final);
  expired.structuredContent.links_expire_at = past.toISOString().replace(/\.\d+Z$/, "Z");
  expired.structuredContent.created_at = new Date(past.getTime() - 24 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  await page.evaluate(([h, c]) => window.hostOpen(h, c, "get_video_status (reopened a day later)"), [html, cspMeta]);
  await page.evaluate(([a, r]) => window.hostDeliver(a, r), [{ task_id: final.structuredContent.task_id }, expired]);
  await view.locator('body[data-state="expired"]').waitFor();
  const expiredText = await view.locator("main").innerText();
  if (!/expired/i.test(expiredText)) fail(`no expiry message: ${expiredText}`);
  if (await view.locator("#player").isVisible()) fail("an expired result still shows the player");
  const src = await view.locator("video").getAttribute("src");
  if (src) fail(`an expired result still loads ${src}`);
  say("expired", { text: expiredText.replace(/\s+/g, " ").trim() });

  // 3. A failed video.
  const failed = structuredClone(final);
  Object.assign(failed.structuredContent, {
    status: "failed",
    upstream_status: "failed",
    video_urls: [],
    links_expire_at: null,
    error: { code: "content_policy", message: "The prompt was refused" },
    next_step: "The video failed (content_policy: The prompt was refused). Tell the user; adjust the prompt and call create_video once.",
  });
  failed.content = [{ type: "text", text: "Video failed." }];
  await page.evaluate(([h, c]) => window.hostOpen(h, c, "get_video_status (failed)"), [html, cspMeta]);
  await page.evaluate(([a, r]) => window.hostDeliver(a, r), [{ task_id: final.structuredContent.task_id }, failed]);
  await view.locator('body[data-state="failed"]').waitFor();
  const failedText = await view.locator("main").innerText();
  if (!/content_policy: The prompt was refused/.test(failedText) || !/adjust the prompt/.test(failedText)) fail(`no error/advice: ${failedText}`);
  say("failed", { text: failedText.replace(/\s+/g, " ").trim() });

  const cspErrors = consoleLines.filter((l) => /Content Security Policy|Refused to/i.test(l));
  if (cspErrors.length) fail(`CSP violations: ${cspErrors.join(" | ")}`);
  say("done", { seconds: (Date.now() - started) / 1000 });
} catch (e) {
  exitCode = 1;
  console.error(`player test failed: ${e.message}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  server.close();
}
process.exit(exitCode);
