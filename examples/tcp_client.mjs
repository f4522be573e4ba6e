#!/usr/bin/env node
// A pushwire TCP client in plain Node.js (no dependencies), written from docs/protocol.md.
//
//   node examples/tcp_client.mjs --port 7000 --channel lobby --send "hello from node"
//   node examples/tcp_client.mjs --port 7000 --channel feed --count 1000 --drop-after 400
//
// It prints every message it receives as one JSON line: {"offset":…,"data":…} for text,
// {"offset":…,"binary":"<hex>"} for binary. With --drop-after N it drops its connection after
// N messages, reconnects, resumes its session and re-subscribes from the last offset it saw,
// so the output must still hold every message exactly once.
import net from 'node:net';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, word, i, all) => {
    if (word.startsWith('--')) pairs.push([word.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const host = args.host || '127.0.0.1';
const port = Number(args.port || 7000);
const channel = args.channel || 'lobby';
const count = Number(args.count || 0);
const dropAfter = Number(args['drop-after'] || 0);
const timeoutMs = Number(args.timeout || 20000);

// A frame: 4-byte big-endian length of (kind byte + payload), the kind byte, the payload.
function frame(kind, payload) {
  const out = Buffer.alloc(5 + payload.length);
  out.writeUInt32BE(payload.length + 1, 0);
  out[4] = kind;
  payload.copy(out, 5);
  return out;
}
const text = (envelope) => frame(1, Buffer.from(JSON.stringify(envelope)));
const binary = (envelope, bytes) =>
  frame(2, Buffer.concat([Buffer.from(JSON.stringify(envelope)), Buffer.from([0x0a]), bytes]));

let session = null;
let resume = null; // the session's resume secret: the id alone resumes nothing
let last = null; // {epoch, offset} of the last channel message seen
let received = 0;
let dropped = false;
let announced = false; // the --ready line is printed once, not again after a resumption
let heartbeat = 0; // seconds, from the welcome: the server pings a silent client this often

function connect() {
  const socket = net.connect({ host, port });
  let buffer = Buffer.alloc(0);
  let heard = Date.now();
  let pinged = false;
  heartbeat = 0;
  // A link torn where neither end saw it looks open for minutes: after one heartbeat without
  // a byte, ping; after two, drop the connection and resume the session.
  const liveness = setInterval(() => {
    const silent = (Date.now() - heard) / 1000;
    if (!heartbeat || socket.destroyed) return;
    if (silent >= 2 * heartbeat) {
      clearInterval(liveness);
      socket.destroy();
      connect();
    } else if (silent >= heartbeat && !pinged) {
      pinged = true;
      socket.write(text({ type: 'ping' }));
    }
  }, 100);
  liveness.unref();
  socket.on('close', () => clearInterval(liveness));
  socket.on('connect', () => {
    socket.write(text({ type: 'hello', user: 'node', session, resume }));
  });
  socket.on('data', (chunk) => {
    heard = Date.now();
    pinged = false;
    buffer = Buffer.concat([buffer, chunk]);
    while (buffer.length >= 4) {
      const length = buffer.readUInt32BE(0);
      if (buffer.length < 4 + length) break;
      const kind = buffer[4];
      const payload = buffer.subarray(5, 4 + length);
      buffer = buffer.subarray(4 + length);
      let envelope;
      let bytes = null;
      if (kind === 1) {
        envelope = JSON.parse(payload.toString('utf8'));
      } else {
        const end = payload.indexOf(0x0a);
        envelope = JSON.parse(payload.subarray(0, end).toString('utf8'));
        bytes = payload.subarray(end + 1);
      }
      handle(socket, envelope, bytes);
    }
  });
  socket.on('error', (error) => {
    console.error(`pushwire tcp client: ${error.message}`);
    process.exit(1);
  });
  return socket;
}

function handle(socket, envelope, bytes) {
  switch (envelope.type) {
    case 'welcome':
      session = envelope.session;
      resume = envelope.resume;
      heartbeat = Number(envelope.heartbeat) || 0;
      socket.write(
        text({ type: 'subscribe', id: 1, channel, ...(last ? { since: last } : {}) }),
      );
      break;
    case 'subscribed':
      if (args.send && !announced) {
        socket.write(text({ type: 'publish', channel, data: args.send }));
        if (args['send-binary']) {
          socket.write(binary({ type: 'publish', channel }, Buffer.from(args['send-binary'], 'hex')));
        }
      }
      if (args.ready && !announced) console.log(JSON.stringify({ ready: true, session }));
      announced = true;
      break;
    case 'message': {
      if (last && envelope.epoch === last.epoch && envelope.offset <= last.offset) break;
      last = { epoch: envelope.epoch, offset: envelope.offset };
      received += 1;
      const line = { offset: envelope.offset };
      if (bytes) line.binary = bytes.toString('hex');
      else line.data = envelope.data;
      console.log(JSON.stringify(line));
      if (count && received >= count) {
        socket.write(text({ type: 'close' }));
        socket.end();
        process.exit(0);
      }
      if (dropAfter && received === dropAfter && !dropped) {
        dropped = true;
        socket.destroy(); // drop without a goodbye: the session waits for us
        connect();
      }
      break;
    }
    case 'ping':
      socket.write(text({ type: 'pong' }));
      break;
    case 'error':
      console.error(`pushwire error ${envelope.code}: ${envelope.message}`);
      break;
    case 'close':
      console.error(`closed by the server: ${envelope.code} ${envelope.reason}`);
      process.exit(2);
      break;
    default:
      break;
  }
}

setTimeout(() => {
  console.error(`timed out after ${timeoutMs} ms with ${received} messages`);
  process.exit(3);
}, timeoutMs).unref();
connect();
