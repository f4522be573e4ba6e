// Node socket.io: every client joins room "bench"; `pub` is emitted to the room, `echo` back.
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[process.argv.indexOf("--port") + 1]);
const httpServer = http.createServer();
const io = new Server(httpServer, { perMessageDeflate: false, httpCompression: false });
io.on("connection", (socket) => {
  socket.join("bench");
  socket.on("pub", (data) => io.to("bench").emit("msg", data));
  socket.on("echo", (data) => socket.emit("echo", data));
});
httpServer.listen(port, "127.0.0.1");
