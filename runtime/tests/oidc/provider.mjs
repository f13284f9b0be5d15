// A real OpenID provider for the runtime's tests: node-oidc-provider (certified OpenID
// Connect implementation) with a password form of its own, users with group claims and
// one confidential client. Started on loopback by tests/oidc_provider.py:
//   node provider.mjs CONFIG.json      (prints "ready <issuer>" once it listens)
// CONFIG: {port, host, issuer, tls: {cert, key} | null, clients: [...],
//          users: {sub: {password, claims}}}.
// POST /__test/claims (JSON {sub, claims}) changes a user's claims for the next logins.
// POST /__test/mode (mode=none|tamper|expired) makes the token endpoint hand out an ID
// token whose payload was altered after signing, or one re-signed with the provider's own
// key but expired an hour ago: the relying party must refuse both.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';

import * as jose from 'jose';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const { users } = config;
let mode = 'none';

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const publicJwk = await jose.exportJWK(privateKey);
// a key id of its own per key (as real providers do), or a fixed one (config.kid: the
// key-replaced-under-the-same-id case)
const kid = config.kid || await jose.calculateJwkThumbprint(publicJwk);
const signingJwk = { ...publicJwk, kid, alg: 'RS256', use: 'sig' };

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8">
<title>${esc(title)}</title></head><body><h1>${esc(title)}</h1>${body}</body></html>`;

const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: { keys: [signingJwk] },
  cookies: { keys: ['ravada-test-provider-cookie-key'] },
  claims: {
    openid: ['sub'],
    // like a Keycloak group mapper on the client's dedicated scope: groups come with profile
    profile: ['preferred_username', 'name', 'groups'],
    email: ['email'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'email', 'groups'],
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = page('Sign out of the test provider?', `${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>`);
      },
      postLogoutSuccessSource: async (ctx) => { ctx.body = page('Signed out', ''); },
    },
  },
  pkce: { methods: ['S256'], required: () => true },
  interactions: { url: async (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    if (!Object.hasOwn(users, sub)) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...users[sub].claims }) };
  },
  // First-party client: no consent screen, every requested OIDC scope is granted.
  async loadExistingGrant(ctx) {
    const { client, session, params } = ctx.oidc;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
    if (!grant) {
      grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    }
    grant.addOIDCScope(String(params.scope || 'openid'));
    await grant.save();
    return grant;
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Provider error', `<pre>${esc(out.error)}: ${esc(out.error_description)}</pre>`);
  },
});

// The token endpoint's answer, altered on demand (see the header).
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/token' || ctx.status !== 200 || mode === 'none' || !ctx.body?.id_token) return;
  const [header, payload, signature] = ctx.body.id_token.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  if (mode === 'tamper') {
    claims.sub = 'admin';
    const forged = Buffer.from(JSON.stringify(claims)).toString('base64url');
    ctx.body = { ...ctx.body, id_token: `${header}.${forged}.${signature}` };
  } else if (mode === 'expired') {
    const now = Math.floor(Date.now() / 1000);
    const token = await new jose.SignJWT({ ...claims, iat: now - 7200, exp: now - 3600 })
      .setProtectedHeader({ alg: 'RS256', kid: signingJwk.kid, typ: 'JWT' })
      .sign(privateKey);
    ctx.body = { ...ctx.body, id_token: token };
  }
});

const readForm = (req) => new Promise((resolve, reject) => {
  let data = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => { data += chunk; if (data.length > 65536) req.destroy(); });
  req.on('end', () => resolve(new URLSearchParams(data)));
  req.on('error', reject);
});

const loginForm = (uid, error) => page('Sign in to the test provider', `
${error ? `<p role="alert" id="input-error">${esc(error)}</p>` : ''}
<form id="kc-form-login" method="post" action="/interaction/${esc(uid)}">
  <label>Username <input id="username" name="username" autocomplete="username" autofocus></label>
  <label>Password <input id="password" name="password" type="password"></label>
  <button id="kc-login" type="submit">Sign In</button>
</form>`);

async function interaction(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (details.prompt.name !== 'login') {
    // consent is granted by loadExistingGrant; any other prompt ends the interaction
    await provider.interactionFinished(req, res, {}, { mergeWithLastSubmission: true });
    return;
  }
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(loginForm(uid));
    return;
  }
  const form = await readForm(req);
  const name = form.get('username') || '';
  const user = Object.hasOwn(users, name) ? users[name] : undefined;
  if (!user || user.password !== form.get('password')) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(loginForm(uid, 'Invalid username or password.'));
    return;
  }
  await provider.interactionFinished(req, res, { login: { accountId: name } },
    { mergeWithLastSubmission: false });
}

const callback = provider.callback();
const tls = config.tls
  ? { cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) } : null;
const serve = (handler) => (tls ? https.createServer(tls, handler) : http.createServer(handler));
const server = serve(async (req, res) => {
  const url = new URL(req.url, config.issuer);
  try {
    const m = url.pathname.match(/^\/interaction\/([A-Za-z0-9_-]+)$/);
    if (m) {
      await interaction(req, res, m[1]);
    } else if (url.pathname === '/__test/claims' && req.method === 'POST') {
      let body = '';
      for await (const chunk of req) body += chunk;
      const { sub, claims } = JSON.parse(body);
      users[sub].claims = claims;
      res.writeHead(204);
      res.end();
    } else if (url.pathname === '/__test/mode' && req.method === 'POST') {
      mode = (await readForm(req)).get('mode') || 'none';
      res.writeHead(204);
      res.end();
    } else {
      callback(req, res);
    }
  } catch (err) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(`interaction failed: ${err.message}`);
  }
});
server.listen(config.port, config.host || '127.0.0.1', () => {
  process.stdout.write(`ready ${config.issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
