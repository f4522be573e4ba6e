/**
 * The global `Pushwire` that the script build (`<script src="/pushwire.js">`, or the package's
 * `dist/pushwire.js`) defines. For a page that loads the script and is type-checked:
 * `/// <reference types="pushwire/global" />`.
 */
import type { Pushwire as PushwireClass } from './pushwire.js';

declare global {
  var Pushwire: typeof PushwireClass;
}

export {};
