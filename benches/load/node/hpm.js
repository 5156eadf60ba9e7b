// Peer for benches/load/run.sh: express 5 + http-proxy-middleware 3, configured
// like a dev gateway (PEERS.md): the portero prefixes are proxied, the rest is
// served from the SPA dir by express.static.
//
//   node hpm.js --port 9004 --target http://127.0.0.1:9000 [--static DIR]
'use strict';
const http = require('node:http');
const express = require('express');
const { createProxyMiddleware } = require('http-proxy-middleware');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i !== -1 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (dflt === undefined) {
    console.error(`hpm.js: missing --${name}`);
    process.exit(2);
  }
  return dflt;
}

const port = Number(arg('port'));
const target = arg('target');
const staticDir = arg('static', '');

const app = express();
app.disable('x-powered-by');
const proxy = createProxyMiddleware({
  target,
  changeOrigin: true,
  ws: true,
  pathFilter: ['/api', '/admin', '/static', '/media', '/ws'],
  logger: undefined,
});
app.use(proxy);
if (staticDir) app.use(express.static(staticDir));

const server = http.createServer(app);
server.on('upgrade', proxy.upgrade);
server.keepAliveTimeout = 300_000;
server.listen(port, '127.0.0.1', () => {
  console.error(`hpm listening on http://127.0.0.1:${server.address().port}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
