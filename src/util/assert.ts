// Invariant checks: a failed assertion is a bug in Bunker, never bad user input.

export class AssertionError extends Error {}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(`invariant violated: ${message}`);
}
