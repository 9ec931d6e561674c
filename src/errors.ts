// The base of every user-facing failure. Each failure has its own subclass with
// a literal `code` and structured fields; the CLI prints `message` on one line
// (the stack only with -v) and maps `exitCode` to the process status.

export interface ErrorFields {
  [key: string]: unknown;
}

export abstract class DrvboxError extends Error {
  abstract readonly code: string;
  /** Process exit status when this error ends the CLI (1: usage or bad input). */
  exitCode = 1;
  readonly fields: ErrorFields;

  constructor(message: string, fields: ErrorFields = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.fields = fields;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, ...this.fields };
  }
}

/**
 * Declares an error class with a fixed code. Usage:
 *   export class BadThing extends defineError('BadThing', 'E_BAD_THING') {}
 */
export function defineError<C extends string>(name: string, code: C) {
  const cls = class extends DrvboxError {
    readonly code: C = code;
  };
  Object.defineProperty(cls, 'name', { value: name });
  Object.defineProperty(cls.prototype, 'name', { value: name, writable: true, configurable: true });
  return cls;
}

export function isDrvboxError(e: unknown): e is DrvboxError {
  return e instanceof DrvboxError;
}

/** Generic bad-input error used by the CLI for flags and arguments. */
export class UsageError extends defineError('UsageError', 'E_USAGE') {}
