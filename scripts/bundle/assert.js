/**
 * node:assert for the bundled CLI (scripts/build.mjs): yargs checks its own invariants with
 * notStrictEqual and strictEqual, and importing node:assert costs milliseconds at every start (it loads
 * its error formatting and call tracker). A check that holds needs none of that; one that fails is
 * handed to node:assert itself, loaded then, so the error thrown is the same AssertionError.
 */
const assert = () => process.getBuiltinModule('node:assert');

export function strictEqual(actual, expected, message) {
  if (!Object.is(actual, expected)) assert().strictEqual(actual, expected, message);
}

export function notStrictEqual(actual, expected, message) {
  if (Object.is(actual, expected)) assert().notStrictEqual(actual, expected, message);
}
