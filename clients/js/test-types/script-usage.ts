// A page that loads the script build and uses the global it defines (pushwire/global).
/// <reference path="../types/global.d.ts" />
const connection = new globalThis.Pushwire('ws://127.0.0.1:8000/pushwire');
connection.addEventListener('transport', (event) => console.log(event.transport));
export {};
