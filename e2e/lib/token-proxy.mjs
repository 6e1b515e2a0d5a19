// A loopback reverse proxy that adds `Authorization: Bearer <token>` to every request that has
// none, and otherwise passes bytes through untouched in both directions: method, path, every
// header (Host and Origin included, so the gateway behind it judges them itself), request and
// response bodies as streams (SSE stays live). It stands in for a client that holds a token,
// for test runners that send none (the conformance suite's server runner).

import http from 'node:http';

/**
 * @param {{port: number, target: string, token: string}} o  target: the gateway's base URL
 * @returns {Promise<{url: string, requests: () => number, close: () => Promise<void>}>}
 */
export async function startTokenProxy({ port, target, token }) {
  const upstream = new URL(target);
  let count = 0;
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    count++;
    const headers = { ...req.headers };
    if (!headers.authorization) headers.authorization = `Bearer ${token}`;
    const forward = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
        answer.pipe(res);
      },
    );
    forward.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`proxy: ${e.message}`);
    });
    // A client that goes away (e.g. closes an SSE stream) closes the forwarded request too.
    res.on('close', () => forward.destroy());
    req.pipe(forward);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => count,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
