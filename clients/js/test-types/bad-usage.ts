// Mistakes that the declarations must catch: `tsc` fails on this file, with exactly the
// errors named at the end of each marked line (tests/test_js_package.py checks both).
import { Pushwire } from 'pushwire';

const pw = new Pushwire('/pushwire', { transports: 'websocket' }); // error TS2322
pw.addEventListener('gap', (event) => console.log(event.count)); // error TS2339
pw.addEventListener('presence', (event) => console.log(event.members[0].name)); // error TS2339
pw.addEventListener('transport', (event) => event.transport.push('sse')); // error TS2339
pw.onmessage = (event) => event.channel.toUpperCase(); // error TS18047
pw.binaryType = 'text'; // error TS2322
void pw.publish('room'); // error TS2554
void pw.subscribe('room', { presense: true }); // error TS2561
const offset: number = pw.inboxPosition.offset; // error TS18047
console.log(offset);
