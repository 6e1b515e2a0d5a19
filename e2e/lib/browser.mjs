// A deliberately tiny "browser": fetch with a cookie jar and manual redirects. It follows redirects
// within the server's origin, and stops at a redirect anywhere else (the OAuth client's loopback
// callback), returning that Location so the test decides what to do with it. Forms are parsed
// generically, so the tests do not depend on the server's exact field names.

export class Browser {
  /** @param {string} origin the server whose redirects we follow, e.g. http://127.0.0.1:1234 */
  constructor(origin) {
    this.origin = new URL(origin).origin;
    /** @type {Map<string, {value: string, path: string}>} */
    this.cookies = new Map();
  }

  cookieHeader(url) {
    const p = new URL(url).pathname;
    const pairs = [];
    for (const [name, c] of this.cookies) if (p.startsWith(c.path)) pairs.push(`${name}=${c.value}`);
    return pairs.join('; ');
  }

  storeCookies(res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = '/';
      let expired = false;
      for (const a of attrs) {
        const [k, v = ''] = a.split('=').map((s) => s.trim());
        const key = k.toLowerCase();
        if (key === 'path' && v.startsWith('/')) path = v;
        if (key === 'max-age' && Number(v) <= 0) expired = true;
        if (key === 'expires' && Date.parse(v) <= Date.now()) expired = true;
      }
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, { value, path });
    }
  }

  /** One request, no redirects followed. */
  async request(url, { method = 'GET', body, headers = {} } = {}) {
    const h = new Headers(headers);
    const cookie = this.cookieHeader(url);
    if (cookie) h.set('cookie', cookie);
    if (method !== 'GET' && method !== 'HEAD') h.set('origin', this.origin); // as a real browser does
    const res = await fetch(url, { method, body, headers: h, redirect: 'manual', signal: AbortSignal.timeout(15_000) });
    this.storeCookies(res);
    return res;
  }

  /**
   * Navigates like a browser: follows same-origin 30x. Returns either
   * {external: Location} for a redirect leaving the server, or {url, status, html} for a page.
   */
  async navigate(url, init = {}) {
    let current = new URL(url, this.origin).toString();
    let req = init;
    for (let hops = 0; hops < 10; hops++) {
      const res = await this.request(current, req);
      if (res.status >= 300 && res.status < 400 && res.headers.has('location')) {
        await res.arrayBuffer();
        const next = new URL(res.headers.get('location'), current);
        if (next.origin !== this.origin) return { external: next.toString(), status: res.status };
        current = next.toString();
        // 307/308 repeat the request as is; the others become a GET.
        if (res.status !== 307 && res.status !== 308) req = {};
        continue;
      }
      return { url: current, status: res.status, html: await res.text(), headers: res.headers };
    }
    throw new Error(`too many redirects from ${url}`);
  }

  /** Submits a parsed form; `fields` override/add values, `button` is the clicked submit button. */
  async submit(form, fields = {}, button) {
    const params = new URLSearchParams();
    for (const [k, v] of form.fields) if (!(k in fields)) params.append(k, v);
    for (const [k, v] of Object.entries(fields)) params.append(k, v);
    if (button?.name) params.append(button.name, button.value ?? '');
    if (form.method === 'GET') {
      const target = new URL(form.action);
      target.search = params.toString();
      return this.navigate(target.toString());
    }
    return this.navigate(form.action, {
      method: 'POST',
      body: params.toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
  }
}

const ENTITIES = { amp: '&', quot: '"', apos: "'", lt: '<', gt: '>', nbsp: '\u00a0' };

export function decodeEntities(s) {
  return s.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, e) => {
    if (e[0] === '#') {
      const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return String.fromCodePoint(code);
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

function parseAttrs(tag) {
  const attrs = {};
  const re = /([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g;
  const inner = tag.replace(/^<\s*[a-z]+/i, '').replace(/\/?>$/, '');
  for (const m of inner.matchAll(re)) attrs[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  return attrs;
}

/**
 * Every <form> on the page: {method, action (absolute), fields: [[name, value]] for the inputs a
 * browser would send (hidden/text/password/email/checked boxes), buttons: [{name, value, label}]}.
 */
export function parseForms(html, pageUrl) {
  const forms = [];
  for (const m of html.matchAll(/<form\b[^>]*>([\s\S]*?)<\/form>/gi)) {
    const attrs = parseAttrs(m[0].match(/<form\b[^>]*>/i)[0]);
    const body = m[1];
    const fields = [];
    const buttons = [];
    for (const tag of body.matchAll(/<input\b[^>]*>/gi)) {
      const a = parseAttrs(tag[0]);
      if (!a.name) continue;
      const type = (a.type ?? 'text').toLowerCase();
      if (type === 'submit' || type === 'image') buttons.push({ name: a.name, value: a.value ?? '', label: a.value ?? '' });
      else if (type === 'checkbox' || type === 'radio') {
        if ('checked' in a) fields.push([a.name, a.value ?? 'on']);
      } else if (type !== 'button' && type !== 'reset' && type !== 'file') fields.push([a.name, a.value ?? '']);
    }
    for (const b of body.matchAll(/<button\b([^>]*)>([\s\S]*?)<\/button>/gi)) {
      const a = parseAttrs(`<button${b[1]}>`);
      const type = (a.type ?? 'submit').toLowerCase();
      if (type !== 'submit') continue;
      buttons.push({ name: a.name, value: a.value ?? '', label: decodeEntities(b[2].replace(/<[^>]*>/g, '').trim()) });
    }
    for (const t of body.matchAll(/<textarea\b([^>]*)>([\s\S]*?)<\/textarea>/gi)) {
      const a = parseAttrs(`<textarea${t[1]}>`);
      if (a.name) fields.push([a.name, decodeEntities(t[2])]);
    }
    forms.push({
      method: (attrs.method ?? 'GET').toUpperCase(),
      action: new URL(attrs.action || pageUrl, pageUrl).toString(),
      fields,
      buttons,
    });
  }
  return forms;
}

/**
 * Drives a browser from an /authorize URL to the final redirect away from the server: logs in
 * when shown a password form, then clicks the consent button for `decision` ('approve'|'deny').
 * Returns the external Location (the client's redirect URI with code or error).
 */
export async function authorizeInBrowser(browser, authorizeUrl, { email, password, decision = 'approve' }) {
  let page = await browser.navigate(authorizeUrl);
  const seen = [];
  for (let step = 0; step < 6; step++) {
    if (page.external) return page.external;
    seen.push(`${page.status} ${page.url}`);
    const forms = parseForms(page.html, page.url);
    const login = forms.find((f) => f.fields.some(([k]) => k === 'password'));
    const consent =
      forms.find((f) => f.buttons.some((b) => b.name === 'decision' && b.value === decision)) ??
      forms.find((f) => f.buttons.some((b) => b.name === 'decision'));
    if (login && seen.filter((s) => s.startsWith('login')).length > 0) {
      throw new Error(`login form shown again after logging in (wrong password?) at ${page.url}:\n${page.html.slice(0, 2000)}`);
    }
    if (login) {
      seen.push('login');
      const emailField = login.fields.find(([k]) => /email|user|login/i.test(k))?.[0] ?? 'email';
      page = await browser.submit(login, { [emailField]: email, password });
    } else if (consent) {
      const button = consent.buttons.find((b) => b.name === 'decision' && b.value === decision);
      if (!button) throw new Error(`consent form has no decision=${decision} button: ${JSON.stringify(consent.buttons)}`);
      page = await browser.submit(consent, {}, button);
    } else {
      throw new Error(`no login or consent form on ${page.url} (HTTP ${page.status}):\n${page.html.slice(0, 2000)}`);
    }
  }
  throw new Error(`authorization did not finish; pages seen:\n${seen.join('\n')}`);
}
