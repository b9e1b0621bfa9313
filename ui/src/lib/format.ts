// Human forms of sizes and times, as the docker CLI prints them.

const UNITS = ["B", "kB", "MB", "GB", "TB"];

/** Decimal units, three significant digits: 1.23MB, 45.6kB, 0B. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return "0B";
  let i = 0;
  while (n >= 1000 && i < UNITS.length - 1) {
    n /= 1000;
    i++;
  }
  const digits = n >= 100 || i === 0 ? 0 : n >= 10 ? 1 : 2;
  return `${n.toFixed(digits)}${UNITS[i]}`;
}

/** "3 minutes ago", "About an hour ago", as docker's go-units HumanDuration. */
export function formatAge(epochSeconds: number, now: number = Date.now() / 1000): string {
  const s = Math.max(0, Math.floor(now - epochSeconds));
  if (s < 1) return "Less than a second ago";
  if (s === 1) return "1 second ago";
  if (s < 60) return `${s} seconds ago`;
  const m = Math.floor(s / 60);
  if (m === 1) return "About a minute ago";
  if (m < 60) return `${m} minutes ago`;
  const h = Math.round(s / 3600);
  if (h === 1) return "About an hour ago";
  if (h < 48) return `${h} hours ago`;
  const d = Math.floor(s / 86400);
  if (d < 14) return `${d} days ago`;
  if (d < 60) return `${Math.floor(d / 7)} weeks ago`;
  if (d < 730) return `${Math.floor(d / 30)} months ago`;
  return `${Math.floor(d / 365)} years ago`;
}

/** The short ID docker shows: 12 hex digits, without "sha256:". */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, "").slice(0, 12);
}

const BINARY = ["B", "KiB", "MiB", "GiB", "TiB"];

/** Binary units with four significant digits, as `docker stats` prints memory: 12.34MiB. */
export function formatBinary(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return "0B";
  let i = 0;
  while (n >= 1024 && i < BINARY.length - 1) {
    n /= 1024;
    i++;
  }
  return `${Number(n.toPrecision(4))}${BINARY[i]}`;
}

/** A CPU share as `docker stats` prints it: 0.25%. */
export function formatPercent(p: number): string {
  return `${(Number.isFinite(p) ? p : 0).toFixed(2)}%`;
}
