// Calls into the app's typed commands: a command's error becomes a thrown CommandError that
// carries the code the UI switches on.

import { Channel } from "@tauri-apps/api/core";
import type { AppError, ErrorCode } from "./bindings";

export class CommandError extends Error {
  code: ErrorCode;
  constructor(e: AppError) {
    super(e.message);
    this.code = e.code;
  }
}

type Outcome<T> = { status: "ok"; data: T } | { status: "error"; error: AppError };

/** Unwraps a command's result, throwing its error. */
export async function call<T>(p: Promise<Outcome<T>>): Promise<T> {
  const r = await p;
  if (r.status === "error") throw new CommandError(r.error);
  return r.data;
}

/** A channel whose messages go to `onMessage`. */
export function channel<T>(onMessage: (m: T) => void): Channel<T> {
  const ch = new Channel<T>();
  ch.onmessage = onMessage;
  return ch;
}

/** What to tell the user for an error, by its code. */
export function describe(e: unknown): string {
  if (e instanceof CommandError) {
    switch (e.code) {
      case "engine-not-running":
        return `Berth is not running. Start it from the header or the tray. (${e.message})`;
      case "not-found":
        return `Not found: ${e.message}`;
      case "conflict":
        return `Not now: ${e.message}`;
      case "invalid-input":
        return `Check the input: ${e.message}`;
      default:
        return e.message;
    }
  }
  return e instanceof Error ? e.message : String(e);
}
