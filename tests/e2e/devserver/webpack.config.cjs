// webpack-dev-server 5 for tests/e2e/browser/devserver_test.mjs: a tiny SPA
// with HMR, behind portero (run.sh starts it; see tests/e2e/README.md).
//
// Env:
//   E2E_DEVSERVER_APP   the app folder (a COPY of ./app: the test edits it)
//   E2E_DEVSERVER_PORT  the port on 127.0.0.1
//   E2E_DEVSERVER_REQUEST_LOG  if set, a JSON line per request and WebSocket
//                       upgrade the dev server receives (url, Host, Origin)
const fs = require("node:fs");
const path = require("node:path");

const app = path.resolve(process.env.E2E_DEVSERVER_APP || path.join(__dirname, "app"));
const port = Number(process.env.E2E_DEVSERVER_PORT || 8081);
const requestLog = process.env.E2E_DEVSERVER_REQUEST_LOG;

function record(kind, req) {
  if (!requestLog) return;
  const { host = null, origin = null } = req.headers;
  fs.appendFileSync(requestLog, JSON.stringify({ kind, url: req.url, host, origin }) + "\n");
}

module.exports = {
  mode: "development",
  context: app,
  entry: "./src/index.js",
  output: { path: path.join(app, "dist"), filename: "main.js", publicPath: "/" },
  devtool: false,
  infrastructureLogging: { level: "info" },
  devServer: {
    host: "127.0.0.1",
    port,
    hot: true,
    // index.html only. Not watched: a change there would be a full reload,
    // and the test wants to see HMR alone.
    static: { directory: path.join(app, "public"), watch: false },
    client: {
      overlay: false,
      logging: "info",
      // Left default, the HMR client would connect to the host and port
      // below (ws://127.0.0.1:PORT/ws), straight to the dev server. A
      // 0.0.0.0 host and port 0 mean "the page's own": through portero, at
      // exactly /ws. Vue CLI 5 projects set the same (README, "Fronting a
      // dev server instead").
      webSocketURL: "auto://0.0.0.0:0/ws",
    },
    // No allowedHosts: portero sends the dev server its own Host. The test
    // reads the Host of every request and upgrade from this log.
    setupMiddlewares: (middlewares) => {
      middlewares.unshift({ name: "e2e-request-log", middleware: (req, res, next) => { record("http", req); next(); } });
      return middlewares;
    },
    onListening: (devServer) => {
      devServer.server.on("upgrade", (req) => record("upgrade", req));
    },
  },
};
