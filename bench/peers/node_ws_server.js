// Node `ws`: a WebSocketServer per path on one http server (noServer + handleUpgrade).
"use strict";
const http = require("http");
const { WebSocketServer, WebSocket } = require("ws");

const port = Number(process.argv[process.argv.indexOf("--port") + 1]);
const fanout = new WebSocketServer({ noServer: true, perMessageDeflate: false });
const echo = new WebSocketServer({ noServer: true, perMessageDeflate: false });

fanout.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    for (const client of fanout.clients) {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
});
echo.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});

const server = http.createServer((req, res) => res.writeHead(404).end());
server.on("upgrade", (req, socket, head) => {
  const target = req.url === "/echo" ? echo : req.url === "/fanout" ? fanout : null;
  if (!target) return socket.destroy();
  target.handleUpgrade(req, socket, head, (ws) => target.emit("connection", ws, req));
});
server.listen(port, "127.0.0.1");
