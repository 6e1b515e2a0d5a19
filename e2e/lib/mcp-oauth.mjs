// An in-memory OAuthClientProvider for the MCP TypeScript SDKs (v1 @modelcontextprotocol/sdk and
// v2 @modelcontextprotocol/client share the interface) that plays the user headlessly: when the
// SDK sends the user to the authorization server, it logs in and approves consent with the
// cookie-jar browser and keeps the callback URL (code, state, iss) for transport.finishAuth().

import { randomBytes } from 'node:crypto';
import { Browser, authorizeInBrowser } from './browser.mjs';
import { loopbackRedirectUri } from './oauth.mjs';

export class HeadlessOAuthProvider {
  /**
   * @param {object} o
   * @param {{url:string, email:string, password:string}} o.gh   the server and its test user
   * @param {string} o.redirectUri   loopback callback; nothing needs to listen there
   * @param {string} [o.clientName]
   * @param {(url: URL, n: number) => void} [o.editAuthorizationUrl]  lets a test change the n-th
   *   (0-based) authorization request before the "user" opens it, e.g. to grant a narrower scope
   */
  constructor({ gh, redirectUri, clientName = 'e2e MCP SDK client', editAuthorizationUrl }) {
    this.gh = gh;
    this.browser = new Browser(gh.url);
    this._redirectUri = redirectUri;
    this._clientName = clientName;
    this._edit = editAuthorizationUrl;
    this._client = undefined;
    this._tokens = undefined;
    this._verifier = undefined;
    this._state = undefined;
    this._discovery = undefined;
    /** Every authorization URL the SDK asked to open (after editing), in order. */
    this.authorizationUrls = [];
    /** Every callback URL the authorization server redirected back to, in order. */
    this.callbacks = [];
    /** Every token set the SDK saved, in order. */
    this.savedTokens = [];
  }

  static async create(opts) {
    return new HeadlessOAuthProvider({ redirectUri: await loopbackRedirectUri(), ...opts });
  }

  get redirectUrl() {
    return this._redirectUri;
  }

  get clientMetadata() {
    return {
      client_name: this._clientName,
      redirect_uris: [this._redirectUri],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    };
  }

  state() {
    this._state = randomBytes(16).toString('base64url');
    return this._state;
  }

  clientInformation() {
    return this._client;
  }

  saveClientInformation(info) {
    this._client = info;
  }

  tokens() {
    return this._tokens;
  }

  saveTokens(tokens) {
    this._tokens = tokens;
    this.savedTokens.push(tokens);
  }

  /** Test hook: replace the stored access token (e.g. with garbage), keeping the rest. */
  corruptAccessToken(accessToken) {
    this._tokens = { ...this._tokens, access_token: accessToken };
  }

  // Kept so that the SDK can bind the callback leg to the authorization server it discovered
  // (v2 checks the issuer of the stored discovery against the callback's iss).
  saveDiscoveryState(state) {
    this._discovery = state;
  }

  discoveryState() {
    return this._discovery;
  }

  /** Test hook: forget the refresh token, as a client that never got or kept one. */
  dropRefreshToken() {
    const { refresh_token: _, ...rest } = this._tokens ?? {};
    this._tokens = rest;
  }

  saveCodeVerifier(verifier) {
    this._verifier = verifier;
  }

  codeVerifier() {
    if (!this._verifier) throw new Error('no code verifier saved');
    return this._verifier;
  }

  /** The user's side of the redirect: log in, approve, remember where the AS sent us back. */
  async redirectToAuthorization(authorizationUrl) {
    const url = new URL(authorizationUrl);
    this._edit?.(url, this.authorizationUrls.length);
    this.authorizationUrls.push(url);
    const location = await authorizeInBrowser(this.browser, url.toString(), {
      email: this.gh.email,
      password: this.gh.password,
    });
    const callback = new URL(location);
    if (`${callback.origin}${callback.pathname}` !== this._redirectUri) {
      throw new Error(`authorization server redirected to ${location}, not to ${this._redirectUri}`);
    }
    if (this._state !== undefined && callback.searchParams.get('state') !== this._state) {
      throw new Error(`state mismatch in callback ${location} (sent ${this._state})`);
    }
    this.callbacks.push(callback);
  }

  /** The last callback's query (code, state, iss); throws when it carries an OAuth error. */
  get lastCallback() {
    const cb = this.callbacks.at(-1);
    if (!cb) throw new Error('the SDK never sent the user to the authorization server');
    if (cb.searchParams.has('error')) throw new Error(`authorization failed: ${cb}`);
    return cb.searchParams;
  }

  get lastCode() {
    const code = this.lastCallback.get('code');
    if (!code) throw new Error(`no code in callback ${this.callbacks.at(-1)}`);
    return code;
  }
}

/** The text of a CallToolResult's text blocks, joined. */
export function toolText(result) {
  return (result.content ?? [])
    .filter((c) => c.type === 'text')
    .map((c) => c.text)
    .join('');
}

/** Races a promise against a timer so that a hung client fails the test instead of stalling it. */
export function within(ms, promise, what = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
