// Small helpers around oauth4webapi shared by the test files.

import * as oauth from 'oauth4webapi';
import { freePort } from './server.mjs';

// Our servers run on loopback http://, which oauth4webapi refuses unless told otherwise.
export const INSECURE = { [oauth.allowInsecureRequests]: true };

/** RFC 8414 discovery through oauth4webapi (which checks the issuer, modulo URL normalisation). */
export async function discover(issuer) {
  const res = await oauth.discoveryRequest(new URL(issuer), { algorithm: 'oauth2', ...INSECURE });
  return oauth.processDiscoveryResponse(new URL(issuer), res);
}

/** A redirect URI on a loopback port that nothing listens on: the browser stops there anyway. */
export async function loopbackRedirectUri() {
  return `http://127.0.0.1:${await freePort()}/callback`;
}

/** RFC 7591 registration; returns the parsed response (asserting 201 is the caller's business). */
export async function register(as, metadata) {
  const res = await fetch(as.registration_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(metadata),
  });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}

/** An authorization request URL with PKCE S256 and state; returns it with the secrets. */
export async function authorizationRequest(as, client, { redirectUri, resource, scope, pkce = true, extra = {} }) {
  const codeVerifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const url = new URL(as.authorization_endpoint);
  const p = url.searchParams;
  p.set('response_type', 'code');
  p.set('client_id', client.client_id);
  p.set('redirect_uri', redirectUri);
  p.set('state', state);
  if (pkce) {
    p.set('code_challenge', await oauth.calculatePKCECodeChallenge(codeVerifier));
    p.set('code_challenge_method', 'S256');
  }
  if (resource) p.set('resource', resource);
  if (scope) p.set('scope', scope);
  for (const [k, v] of Object.entries(extra)) p.set(k, v);
  return { url: url.toString(), codeVerifier, state };
}

/** Runs fn and returns the OAuth error it threw (ResponseBodyError / AuthorizationResponseError). */
export async function oauthError(fn) {
  try {
    await fn();
  } catch (e) {
    if (e instanceof oauth.ResponseBodyError || e instanceof oauth.AuthorizationResponseError) return e;
    throw e;
  }
  throw new Error('expected an OAuth error response, got success');
}
