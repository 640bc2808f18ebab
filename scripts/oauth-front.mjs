// The server with OAuth on, fronted so that a client without OAuth support
// (the MCP conformance suite has no token option) reaches it signed in.
//
// Starts, all on 127.0.0.1 with OS-picked ports:
// - a local authorization server: OpenID metadata and a JWKS with an ES256
//   key made at start (as tests/oauth.rs does);
// - the built binary, `--simulate --http 127.0.0.1:<port>`, with
//   HEYGEN_OAUTH_ISSUER = that issuer and HEYGEN_PUBLIC_URL = its own /mcp URL;
// - a front that forwards every request unchanged (method, path, headers
//   including Host and Origin, body, streamed responses) and adds
//   `Authorization: Bearer <token>` when the request has none. The token is a
//   JWT of the issuer for the user "conformance": aud = the server's URL,
//   scope "videos", valid for an hour.
// Before announcing the front it checks that OAuth is really on: the server
// answers a request without a token with 401 and a resource_metadata
// challenge, and the same request through the front with 200.
//
// Usage: node scripts/oauth-front.mjs <path to heygen-video-mcp>
// Prints `front listening on http://127.0.0.1:<port>/mcp` on stdout, the
// server's stderr on stderr, and runs until SIGTERM or SIGINT. Needs only
// Node's built-in modules (Node 20 or newer).

import { spawn } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const BIN = process.argv[2];
const START_MS = 20_000;
const SUBJECT = 'conformance';

let child;
let home;
const servers = [];

function stop(code) {
  if (child && child.exitCode === null) child.kill('SIGTERM');
  for (const s of servers) s.close();
  if (home) rmSync(home, { recursive: true, force: true });
  process.exit(code);
}

function fail(msg) {
  console.error(`oauth front FAILED: ${msg}`);
  stop(1);
}

process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

const b64url = (data) => Buffer.from(data).toString('base64url');

async function listen(server) {
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  servers.push(server);
  return server.address().port;
}

async function freePort() {
  const probe = createServer();
  await new Promise((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', resolve);
  });
  const { port } = probe.address();
  await new Promise((r) => probe.close(r));
  return port;
}

// The authorization server: metadata and JWKS only (tokens are minted here).
async function startIssuer(publicJwk) {
  let issuer;
  const server = createServer((req, res) => {
    const send = (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/.well-known/openid-configuration' || req.url === '/.well-known/oauth-authorization-server') {
      send(200, {
        issuer,
        jwks_uri: `${issuer}/jwks`,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        response_types_supported: ['code'],
        code_challenge_methods_supported: ['S256'],
      });
    } else if (req.url === '/jwks') {
      send(200, { keys: [publicJwk] });
    } else {
      send(404, { error: 'not_found' });
    }
  });
  issuer = `http://127.0.0.1:${await listen(server)}`;
  return issuer;
}

function mint(privateKey, kid, issuer, audience) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'ES256', typ: 'at+jwt', kid }));
  const claims = b64url(
    JSON.stringify({ iss: issuer, aud: audience, sub: SUBJECT, scope: 'videos', iat: now, exp: now + 3600 }),
  );
  const signature = sign('sha256', Buffer.from(`${header}.${claims}`), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${header}.${claims}.${b64url(signature)}`;
}

async function startServer(issuer, port, mcpUrl) {
  home = mkdtempSync(join(tmpdir(), 'heygen-oauth-front-'));
  child = spawn(BIN, ['--simulate', '--http', `127.0.0.1:${port}`], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: home,
      XDG_DATA_HOME: join(home, 'data'),
      HEYGEN_DOWNLOAD_DIR: join(home, 'downloads'),
      HEYGEN_OAUTH_ISSUER: issuer,
      HEYGEN_PUBLIC_URL: mcpUrl,
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.once('exit', (code, signal) => fail(`the server exited (code ${code}, signal ${signal})`));
  return new Promise((resolve, reject) => {
    child.once('error', (e) => reject(new Error(`cannot start ${BIN}: ${e.message}`)));
    createInterface({ input: child.stderr }).on('line', (line) => {
      console.error(line);
      const m = line.match(/^listening on (http:\/\/\S+\/mcp)/);
      if (m) resolve(m[1]);
    });
  });
}

// Forwards one request to the server as it came, plus the bearer token.
function forward(serverPort, token) {
  return (req, res) => {
    const headers = { ...req.headers };
    if (!headers.authorization) headers.authorization = `Bearer ${token}`;
    const up = request(
      { host: '127.0.0.1', port: serverPort, method: req.method, path: req.url, headers },
      (answer) => {
        res.writeHead(answer.statusCode, answer.statusMessage, answer.rawHeaders);
        res.flushHeaders();
        answer.pipe(res);
      },
    );
    up.on('error', (e) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`oauth front: ${e.message}`);
      } else {
        res.destroy();
      }
    });
    // A client that goes away (e.g. closes an SSE stream) closes the
    // server's side too.
    res.on('close', () => up.destroy());
    req.pipe(up);
  };
}

async function listTools(url, token) {
  const resp = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2026-07-28',
      'mcp-method': 'tools/list',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/list',
      params: {
        _meta: {
          'io.modelcontextprotocol/protocolVersion': '2026-07-28',
          'io.modelcontextprotocol/clientCapabilities': {},
        },
      },
    }),
    signal: AbortSignal.timeout(START_MS),
  });
  await resp.text();
  return resp;
}

async function main() {
  if (!BIN) throw new Error('usage: node scripts/oauth-front.mjs <path to heygen-video-mcp>');
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = 'front-es256-1';
  const issuer = await startIssuer({ ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' });

  const port = await freePort();
  const mcpUrl = `http://127.0.0.1:${port}/mcp`;
  const bound = await Promise.race([
    startServer(issuer, port, mcpUrl),
    new Promise((_, reject) => setTimeout(() => reject(new Error('the server did not start within 20 s')), START_MS)),
  ]);
  if (bound !== mcpUrl) throw new Error(`the server listens on ${bound}, expected ${mcpUrl}`);
  const token = mint(privateKey, kid, issuer, mcpUrl);

  const frontPort = await listen(createServer(forward(port, token)));
  const frontUrl = `http://127.0.0.1:${frontPort}/mcp`;

  const refused = await listTools(mcpUrl, null);
  const challenge = refused.headers.get('www-authenticate') || '';
  if (refused.status !== 401 || !challenge.includes('resource_metadata=')) {
    throw new Error(`without a token the server answered HTTP ${refused.status} (${challenge}): OAuth is not on`);
  }
  const accepted = await listTools(frontUrl, null);
  if (accepted.status !== 200) throw new Error(`with the token the front got HTTP ${accepted.status}`);

  console.log(`front listening on ${frontUrl}`);
}

main().catch((e) => fail(e?.message || String(e)));
