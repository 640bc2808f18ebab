// The OAuth connector flow against a real authorization server.
//
// Starts oidc-provider (a certified OpenID Provider) on 127.0.0.1 with an
// OS-picked port: dynamic client registration, PKCE, resource indicators
// (RFC 8707) issuing ES256 JWT access tokens whose audience is the MCP URL,
// automated login and consent. Then starts the built binary
// (`--http 127.0.0.1:0 --simulate`, HEYGEN_OAUTH_ISSUER = the provider) and does
// what a connector does: 401 -> WWW-Authenticate resource_metadata -> protected
// resource metadata -> authorization server metadata -> client registration ->
// authorization request (PKCE S256, resource, scope videos) -> code -> token.
// With that token it calls the tools over a stateless 2026-07-28 request and a
// 2025-11-25 session, and checks that a second user sees only their own videos.
// Then opaque access tokens: a second server, configured as the provider's
// confidential client `heygen-rs` (HEYGEN_OAUTH_CLIENT_ID/SECRET), checks them
// by introspection (RFC 7662); a user signed in for it calls the tools, each
// server refuses the other's tokens, and a token revoked at the provider
// (RFC 7009) is refused.
//
// Usage: node scripts/oidc/flow.mjs <path to heygen-video-mcp>
// Prints one summary line; exits non-zero on any failure; bounded to 60 s.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import Provider, { errors } from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';

const BIN = process.argv[2] || process.env.HEYGEN_BIN;
const TOTAL_MS = 60_000;
const STEP_MS = 20_000;

const children = [];
const homes = [];
let opServer;
const serverLog = [];

function cleanup() {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  if (opServer) opServer.close();
  for (const home of homes) rmSync(home, { recursive: true, force: true });
}

function fail(msg) {
  console.error(`oidc flow FAILED: ${msg}`);
  if (serverLog.length) console.error(`server stderr (last lines):\n${serverLog.slice(-30).join('\n')}`);
  cleanup();
  process.exit(1);
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

const deadline = setTimeout(() => fail(`not finished within ${TOTAL_MS / 1000} s`), TOTAL_MS);
process.on('SIGINT', () => fail('interrupted'));
process.on('SIGTERM', () => fail('terminated'));

const b64url = (buf) => Buffer.from(buf).toString('base64url');

// A minimal cookie jar per user agent (one per signed-in user); paths are
// ignored, the cookie names of oidc-provider are distinct.
class Agent {
  constructor() {
    this.cookies = new Map();
  }
  async get(url) {
    const headers = {};
    if (this.cookies.size) {
      headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    }
    const resp = await fetch(url, { redirect: 'manual', headers, signal: AbortSignal.timeout(STEP_MS) });
    for (const c of resp.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(c)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return resp;
  }
}

async function getJson(url, init = {}) {
  const resp = await fetch(url, { ...init, signal: AbortSignal.timeout(STEP_MS) });
  const text = await resp.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: resp.status, headers: resp.headers, body };
}

async function listen(server) {
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return server.address().port;
}

async function startServer(issuer, port, mcpUrl, extraEnv = {}) {
  const home = mkdtempSync(join(tmpdir(), 'heygen-oidc-'));
  homes.push(home);
  const child = spawn(BIN, ['--http', `127.0.0.1:${port}`, '--simulate'], {
    env: {
      ...extraEnv,
      PATH: process.env.PATH ?? '',
      HOME: home,
      XDG_DATA_HOME: join(home, 'data'),
      HEYGEN_LEDGER: join(home, 'ledger.jsonl'),
      HEYGEN_DOWNLOAD_DIR: join(home, 'downloads'),
      HEYGEN_OAUTH_ISSUER: issuer,
      HEYGEN_PUBLIC_URL: mcpUrl,
      RUST_LOG: 'info',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once('error', (e) => reject(new Error(`cannot start ${BIN}: ${e.message}`)));
    child.once('exit', (code) => reject(new Error(`the server exited early (code ${code})`)));
    createInterface({ input: child.stderr }).on('line', (line) => {
      serverLog.push(line);
      const m = line.match(/^listening on (http:\/\/\S+\/mcp)/);
      if (m) resolve(m[1]);
    });
  });
}

// The resource server's own client at the provider: it only introspects.
const RS_CLIENT_ID = 'heygen-rs';
const RS_CLIENT_SECRET = b64url(randomBytes(32));

function makeProvider(issuer, mcpUrl, opaqueUrl, jwk) {
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: RS_CLIENT_ID,
        client_secret: RS_CLIENT_SECRET,
        grant_types: [],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    jwks: { keys: [jwk] },
    cookies: { keys: [b64url(randomBytes(32))] },
    scopes: ['openid', 'videos'],
    claims: { openid: ['sub'] },
    pkce: { required: () => true },
    findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    issueRefreshToken: () => false,
    ttl: { AccessToken: 600, Grant: 600, Interaction: 300, Session: 600 },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
      // Only the resource server may introspect tokens of other clients.
      introspection: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => client.clientId === RS_CLIENT_ID || token.clientId === client.clientId,
      },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => mcpUrl,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (resourceIndicator === opaqueUrl) {
            return { scope: 'videos', audience: opaqueUrl, accessTokenFormat: 'opaque', accessTokenTTL: 600 };
          }
          if (resourceIndicator !== mcpUrl) throw new errors.InvalidTarget();
          return {
            scope: 'videos',
            audience: mcpUrl,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 600,
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
  });
  return provider;
}

// Automated login and consent: the user is the authorization request's
// login_hint; consent grants exactly what the request is missing.
async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    const login = String(params.login_hint || '');
    if (!login) throw new Error('no login_hint in the authorization request');
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [resource, scopes] of Object.entries(d.missingResourceScopes || {})) {
      grant.addResourceScope(resource, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  throw new Error(`unexpected prompt ${prompt.name}`);
}

// Parses a JSON-RPC response that may come as JSON or as an SSE stream.
function rpcResult(text, contentType, id) {
  const messages = [];
  if ((contentType || '').startsWith('text/event-stream')) {
    for (const line of text.split(/\r?\n/)) {
      if (line.startsWith('data:')) {
        const data = line.slice(5).trim();
        if (data) messages.push(JSON.parse(data));
      }
    }
  } else if (text.trim()) {
    messages.push(JSON.parse(text));
  }
  const m = messages.find((x) => x.id === id);
  check(m, `no JSON-RPC response with id ${id} in: ${text.slice(0, 500)}`);
  check(!m.error, `JSON-RPC error: ${JSON.stringify(m.error)}`);
  return m.result;
}

async function mcpPost(url, token, body, headers) {
  const resp = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(STEP_MS),
  });
  return { resp, text: await resp.text() };
}

function toolResult(result, tool) {
  check(result && result.isError === false, `${tool} failed: ${JSON.stringify(result)}`);
  check(result.structuredContent, `${tool} has no structuredContent`);
  return result.structuredContent;
}

let nextId = 1;

// One stateless 2026-07-28 tools/call.
async function modernCall(mcpUrl, token, name, args) {
  const id = nextId++;
  const { resp, text } = await mcpPost(
    mcpUrl,
    token,
    {
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: {
        name,
        arguments: args,
        _meta: {
          'io.modelcontextprotocol/protocolVersion': '2026-07-28',
          'io.modelcontextprotocol/clientCapabilities': {},
        },
      },
    },
    { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': name },
  );
  check(resp.status === 200, `2026-07-28 ${name}: HTTP ${resp.status}: ${text.slice(0, 300)}`);
  return toolResult(rpcResult(text, resp.headers.get('content-type'), id), name);
}

// A 2025-11-25 session: initialize, initialized, then tools/call.
async function legacySession(mcpUrl, token) {
  const id = nextId++;
  const init = await mcpPost(mcpUrl, token, {
    jsonrpc: '2.0',
    id,
    method: 'initialize',
    params: {
      protocolVersion: '2025-11-25',
      capabilities: {},
      clientInfo: { name: 'oidc-flow', version: '1.0.0' },
    },
  });
  check(init.resp.status === 200, `initialize: HTTP ${init.resp.status}: ${init.text.slice(0, 300)}`);
  const r = rpcResult(init.text, init.resp.headers.get('content-type'), id);
  check(r.protocolVersion === '2025-11-25', `initialize negotiated ${r.protocolVersion}`);
  const sid = init.resp.headers.get('mcp-session-id');
  check(sid, 'initialize returned no mcp-session-id');
  const h = { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
  const note = await mcpPost(mcpUrl, token, { jsonrpc: '2.0', method: 'notifications/initialized' }, h);
  check(note.resp.status === 202, `notifications/initialized: HTTP ${note.resp.status}`);
  return {
    async call(name, args) {
      const cid = nextId++;
      const { resp, text } = await mcpPost(
        mcpUrl,
        token,
        { jsonrpc: '2.0', id: cid, method: 'tools/call', params: { name, arguments: args } },
        h,
      );
      check(resp.status === 200, `2025-11-25 ${name}: HTTP ${resp.status}: ${text.slice(0, 300)}`);
      return toolResult(rpcResult(text, resp.headers.get('content-type'), cid), name);
    },
    async close() {
      await fetch(mcpUrl, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${token}`, ...h },
        signal: AbortSignal.timeout(STEP_MS),
      });
    },
  };
}

// What a connector does, from the 401 to an access token for `login`: a JWT,
// or with `opaque` an opaque one. Returns the token and what revoking it needs.
async function signIn(mcpUrl, login, opaque = false) {
  const unauth = await mcpPost(
    mcpUrl,
    null,
    { jsonrpc: '2.0', id: 0, method: 'tools/call', params: { name: 'list_videos', arguments: {} } },
    { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'list_videos' },
  );
  check(unauth.resp.status === 401, `POST /mcp without a token: HTTP ${unauth.resp.status}, expected 401`);
  const challenge = unauth.resp.headers.get('www-authenticate') || '';
  const prmUrl = challenge.match(/resource_metadata="([^"]+)"/)?.[1];
  check(prmUrl, `no resource_metadata in WWW-Authenticate: ${challenge}`);

  const prm = await getJson(prmUrl);
  check(prm.status === 200, `protected resource metadata: HTTP ${prm.status}`);
  check(prm.body.resource === mcpUrl, `PRM resource ${prm.body.resource} != ${mcpUrl}`);
  const as = prm.body.authorization_servers?.[0];
  check(as, 'PRM lists no authorization server');

  let meta;
  for (const wk of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
    const u = new URL(as);
    const path = u.pathname === '/' ? '' : u.pathname.replace(/\/$/, '');
    const r = await getJson(`${u.origin}${wk}${path}`);
    if (r.status === 200 && typeof r.body === 'object') {
      meta = r.body;
      break;
    }
  }
  check(meta, `no authorization server metadata at ${as}`);
  check(meta.issuer === as, `metadata issuer ${meta.issuer} != ${as}`);
  check((meta.code_challenge_methods_supported || []).includes('S256'), 'the AS does not advertise PKCE S256');
  check(meta.registration_endpoint, 'the AS has no registration_endpoint');

  const redirectUri = `http://127.0.0.1:${callbackPort}/callback`;
  const reg = await getJson(meta.registration_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'oidc-flow connector',
      application_type: 'native',
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
    }),
  });
  check(reg.status === 201, `client registration: HTTP ${reg.status}: ${JSON.stringify(reg.body)}`);
  const clientId = reg.body.client_id;

  const verifier = b64url(randomBytes(32));
  const challengeS256 = b64url(createHash('sha256').update(verifier).digest());
  const state = b64url(randomBytes(16));
  const auth = new URL(meta.authorization_endpoint);
  auth.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri,
    scope: 'videos',
    resource: mcpUrl,
    code_challenge: challengeS256,
    code_challenge_method: 'S256',
    state,
    login_hint: login,
  }).toString();

  const agent = new Agent();
  let url = auth.href;
  let code;
  for (let hop = 0; hop < 12; hop++) {
    const resp = await agent.get(url);
    const loc = resp.headers.get('location');
    if (resp.status < 300 || resp.status >= 400 || !loc) {
      throw new Error(`authorization stopped at ${url}: HTTP ${resp.status}: ${(await resp.text()).slice(0, 300)}`);
    }
    const next = new URL(loc, url);
    if (next.href.startsWith(redirectUri)) {
      const err = next.searchParams.get('error');
      check(!err, `authorization error: ${err}: ${next.searchParams.get('error_description')}`);
      check(next.searchParams.get('state') === state, 'state mismatch');
      code = next.searchParams.get('code');
      break;
    }
    url = next.href;
  }
  check(code, 'no authorization code after following the redirects');

  const tok = await getJson(meta.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      client_id: clientId,
      code_verifier: verifier,
      resource: mcpUrl,
    }).toString(),
  });
  check(tok.status === 200, `token request: HTTP ${tok.status}: ${JSON.stringify(tok.body)}`);
  const token = tok.body.access_token;
  check(!tok.body.refresh_token, 'a refresh token was issued');
  const revocation = { endpoint: meta.revocation_endpoint, clientId };
  if (opaque) {
    check(typeof token === 'string' && token.split('.').length !== 3, 'the access token is not opaque');
    check(String(tok.body.scope).split(' ').includes('videos'), `scope ${tok.body.scope}`);
    return { token, revocation };
  }
  check(typeof token === 'string' && token.split('.').length === 3, 'the access token is not a JWT');
  const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
  check(header.alg === 'ES256' && header.typ === 'at+jwt', `JWT header ${JSON.stringify(header)}`);
  const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
  check(claims.aud === mcpUrl || (Array.isArray(claims.aud) && claims.aud.includes(mcpUrl)), `aud ${claims.aud}`);
  check(claims.sub === login, `sub ${claims.sub} != ${login}`);
  check(claims.iss === as, `iss ${claims.iss}`);
  check(String(claims.scope).split(' ').includes('videos'), `scope ${claims.scope}`);
  return { token, revocation };
}

// A stateless tools/call that must be refused: the status and challenge.
async function refused(mcpUrl, token) {
  const { resp } = await mcpPost(
    mcpUrl,
    token,
    { jsonrpc: '2.0', id: nextId++, method: 'tools/call', params: { name: 'list_videos', arguments: {} } },
    { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'list_videos' },
  );
  return { status: resp.status, challenge: resp.headers.get('www-authenticate') || '' };
}

const ids = (list) => list.videos.map((v) => v.task_id);

let callbackPort;

async function freePort() {
  const probe = createServer();
  const port = await listen(probe);
  await new Promise((r) => probe.close(r));
  return port;
}

async function main() {
  check(BIN, 'usage: node flow.mjs <path to heygen-video-mcp>');

  // Free loopback ports for the redirect URI (never listened on: the flow
  // reads the code from the Location header) and for the MCP server, whose
  // URL is the provider's resource and token audience.
  callbackPort = await freePort();
  const mcpPort = await freePort();
  const mcpUrl = `http://127.0.0.1:${mcpPort}/mcp`;
  const opaquePort = await freePort();
  const opaqueUrl = `http://127.0.0.1:${opaquePort}/mcp`;

  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: 'es256-1', alg: 'ES256', use: 'sig' };

  // The issuer URL needs the provider's port: listen first, then build it.
  let provider;
  let cb;
  opServer = createServer(async (req, res) => {
    if (req.url.startsWith('/interaction/')) {
      try {
        await interaction(provider, req, res);
      } catch (e) {
        res.statusCode = 500;
        res.end(String(e?.message || e));
      }
      return;
    }
    cb(req, res);
  });
  const opPort = await listen(opServer);
  const issuer = `http://127.0.0.1:${opPort}`;
  provider = makeProvider(issuer, mcpUrl, opaqueUrl, jwk);
  cb = provider.callback();

  const bound = await Promise.race([
    startServer(issuer, mcpPort, mcpUrl),
    new Promise((_, rej) => setTimeout(() => rej(new Error('the server did not start within 20 s')), STEP_MS)),
  ]);
  check(bound === mcpUrl, `the server listens on ${bound}, expected ${mcpUrl}`);

  const alice = (await signIn(mcpUrl, 'alice@example.com')).token;

  // 2026-07-28: stateless tools/call.
  const a1 = (await modernCall(mcpUrl, alice, 'create_video', { prompt: 'A fox explains OAuth (2026-07-28)' })).task_id;
  check(a1, 'create_video returned no task_id');
  // 2025-11-25: a session.
  const session = await legacySession(mcpUrl, alice);
  const a2 = (await session.call('create_video', { prompt: 'A fox explains OAuth (2025-11-25)' })).task_id;
  check(a2, 'create_video returned no task_id');
  const legacyList = ids(await session.call('list_videos', {}));
  await session.close();
  const modernList = ids(await modernCall(mcpUrl, alice, 'list_videos', {}));
  for (const [name, list] of [['2025-11-25', legacyList], ['2026-07-28', modernList]]) {
    check(list.includes(a1) && list.includes(a2), `${name} list_videos of alice lacks her videos: ${list}`);
  }

  // A second user sees only their own videos.
  const bob = (await signIn(mcpUrl, 'bob@example.com')).token;
  const b1 = (await modernCall(mcpUrl, bob, 'create_video', { prompt: 'A bear explains PKCE' })).task_id;
  const bobList = ids(await modernCall(mcpUrl, bob, 'list_videos', {}));
  check(bobList.length === 1 && bobList[0] === b1, `bob's list_videos is not only his video: ${bobList}`);
  const aliceAgain = ids(await modernCall(mcpUrl, alice, 'list_videos', {}));
  check(!aliceAgain.includes(b1), "alice's list_videos shows bob's video");

  // Opaque access tokens, introspected by a second server as heygen-rs.
  const bound2 = await Promise.race([
    startServer(issuer, opaquePort, opaqueUrl, {
      HEYGEN_OAUTH_CLIENT_ID: RS_CLIENT_ID,
      HEYGEN_OAUTH_CLIENT_SECRET: RS_CLIENT_SECRET,
    }),
    new Promise((_, rej) => setTimeout(() => rej(new Error('the second server did not start within 20 s')), STEP_MS)),
  ]);
  check(bound2 === opaqueUrl, `the second server listens on ${bound2}, expected ${opaqueUrl}`);
  const carol = (await signIn(opaqueUrl, 'carol@example.com', true)).token;
  const c1 = (await modernCall(opaqueUrl, carol, 'create_video', { prompt: 'A cat explains introspection' })).task_id;
  const carolList = ids(await modernCall(opaqueUrl, carol, 'list_videos', {}));
  check(carolList.length === 1 && carolList[0] === c1, `carol's list_videos is not her one video: ${carolList}`);
  // Each server takes only tokens meant for it.
  const cross = [
    ['a JWT for the first server, at the second', opaqueUrl, alice, 'audience'],
    ['an opaque token at the server without introspection', mcpUrl, carol, 'invalid_token'],
    ['a made-up opaque token', opaqueUrl, b64url(randomBytes(32)), 'not active'],
  ];
  for (const [what, url, token, text] of cross) {
    const r = await refused(url, token);
    check(r.status === 401 && r.challenge.includes(text), `${what}: HTTP ${r.status}, ${r.challenge}`);
  }
  // A token revoked at the provider before its first use is refused.
  const dave = await signIn(opaqueUrl, 'dave@example.com', true);
  const revoke = await fetch(dave.revocation.endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: dave.token, client_id: dave.revocation.clientId }).toString(),
    signal: AbortSignal.timeout(STEP_MS),
  });
  check(revoke.status === 200, `revocation: HTTP ${revoke.status}`);
  const r = await refused(opaqueUrl, dave.token);
  check(r.status === 401 && r.challenge.includes('not active'), `a revoked token: HTTP ${r.status}, ${r.challenge}`);

  console.log(
    `oidc flow OK: oidc-provider issuer ${issuer}, MCP ${mcpUrl}; 401 -> PRM -> AS metadata -> ` +
      `DCR -> PKCE S256 + resource -> ES256 JWT (aud = MCP URL); alice: 2 videos over 2026-07-28 and ` +
      `2025-11-25; bob sees only his 1; opaque token (introspection as ${RS_CLIENT_ID}) for MCP ` +
      `${opaqueUrl}: carol's video, cross-server and made-up tokens refused, a revoked token refused`,
  );
}

main()
  .then(() => {
    clearTimeout(deadline);
    cleanup();
    process.exit(0);
  })
  .catch((e) => fail(e?.stack || String(e)));
