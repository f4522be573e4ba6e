/**
 * The script entry, bundled into src/pushwire/static/pushwire.js: `<script src="/pushwire.js">`
 * defines the global `Pushwire`, and `require()` returns it where `module` exists.
 */
import { Pushwire } from './pushwire.js';

globalThis.Pushwire = Pushwire;
if (typeof module !== 'undefined' && module.exports) module.exports = Pushwire;
