/**
 * `require('pushwire')`: the class itself (module.exports = Pushwire), as the script build
 * sets it. The declarations are those of the ES module (pushwire.d.ts).
 */
type Module = typeof import('./pushwire.js', { with: { 'resolution-mode': 'import' } });
declare const Pushwire: Module['Pushwire'];
type Pushwire = InstanceType<Module['Pushwire']>;
export = Pushwire;
