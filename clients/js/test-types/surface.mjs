// What types/pushwire.d.ts declares beside what the client has: prints JSON that
// tests/test_js_package.py compares, so that the hand-written declarations cannot drift
// from clients/js/src.
//
//   node test-types/surface.mjs BUILT_MODULE_URL
//
// declared: the members and statics of `class Pushwire` and the keys of PushwireEventMap
// (parsed with the TypeScript compiler's API). runtime: the public names (not `_private`) on
// Pushwire.prototype and its parts, and on the class, of the built ES module; the event
// types the sources dispatch (`new Event('x')`, `new MessageEvent('x')`, `new CloseEvent('x')`,
// and the presence events named where `_presenceEvent('x', ...)` is called).
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const HERE = dirname(dirname(fileURLToPath(import.meta.url)));
const DECLARATIONS = join(HERE, 'types', 'pushwire.d.ts');
// Declared on the class for their typed overloads; EventTarget has them at run time.
const INHERITED = new Set(['addEventListener', 'removeEventListener']);

function declared() {
  const source = ts.createSourceFile(
    DECLARATIONS, readFileSync(DECLARATIONS, 'utf8'), ts.ScriptTarget.ES2020, true);
  const members = new Set();
  const statics = new Set();
  const events = new Set();
  for (const statement of source.statements) {
    if (ts.isClassDeclaration(statement) && statement.name?.text === 'Pushwire') {
      for (const member of statement.members) {
        if (!member.name || ts.isConstructorDeclaration(member)) continue;
        const name = member.name.getText(source);
        const isStatic = ts.getCombinedModifierFlags(member) & ts.ModifierFlags.Static;
        if (isStatic) statics.add(name);
        else if (!INHERITED.has(name)) members.add(name);
      }
    }
    if (ts.isInterfaceDeclaration(statement) && statement.name.text === 'PushwireEventMap') {
      for (const member of statement.members) events.add(member.name.getText(source));
    }
  }
  return { members: [...members].sort(), statics: [...statics].sort(), events: [...events].sort() };
}

async function runtime(url) {
  const { Pushwire } = await import(url);
  const members = new Set();
  for (let proto = Pushwire.prototype; proto !== EventTarget.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      if (name !== 'constructor' && !name.startsWith('_')) members.add(name);
    }
  }
  const statics = Object.getOwnPropertyNames(Pushwire)
    .filter((name) => !['length', 'name', 'prototype'].includes(name) && !name.startsWith('_'));
  return { members: [...members].sort(), statics: statics.sort(), events: dispatched() };
}

function dispatched() {
  const events = new Set();
  const pattern = /new (?:Event|MessageEvent|CloseEvent)\('(\w+)'|_presenceEvent\('(\w+)'/g;
  const walk = (folder) => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.js')) {
        for (const match of readFileSync(path, 'utf8').matchAll(pattern)) events.add(match[1] || match[2]);
      }
    }
  };
  walk(join(HERE, 'src'));
  return [...events].sort();
}

console.log(JSON.stringify({ declared: declared(), runtime: await runtime(process.argv[2]) }));
