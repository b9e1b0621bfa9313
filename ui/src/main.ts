import { mount } from "svelte";
import App from "./App.svelte";
import "./app.css";

// Uncaught errors are kept for the end-to-end test's failure report.
const errors: string[] = [];
(window as unknown as { __berthErrors: string[] }).__berthErrors = errors;
const keep = (e: unknown) => errors.push(e instanceof Error ? `${e.message}\n${e.stack}` : String(e));
window.addEventListener("error", (e) => keep(e.error ?? e.message));
window.addEventListener("unhandledrejection", (e) => keep(e.reason));

// Under the C locale WebKit reports the language "C", which Intl rejects (and uPlot formats
// with Intl): fall back to English there.
try {
  new Intl.NumberFormat(navigator.language);
} catch {
  Object.defineProperty(Navigator.prototype, "language", { get: () => "en-US", configurable: true });
}

const target = document.getElementById("app")!;
let app;
try {
  app = mount(App, { target });
} catch (e) {
  // Say so in the window rather than leave it blank.
  keep(e);
  target.textContent = `Berth's window failed to start: ${e instanceof Error ? e.message : String(e)}`;
  throw e;
}
export default app;
