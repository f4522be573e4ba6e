/**
 * `require('pushwire')`: the class itself (module.exports = Pushwire), as the script build
 * sets it. The declarations are those of the ES module (pushwire.d.ts).
 */
import { Pushwire } from './pushwire.js';

export = Pushwire;
