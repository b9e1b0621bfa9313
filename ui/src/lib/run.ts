// The Run form's text fields, parsed as the docker CLI reads -p and -e.

import type { PortSpec } from "./bindings";

/** "8080:80, 53/udp, 9000:9000/tcp": host port optional (0 picks a free one). */
export function parsePorts(text: string): PortSpec[] {
  return text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((item) => {
      const m = /^(?:(\d+):)?(\d+)(?:\/(tcp|udp))?$/.exec(item);
      if (!m) throw new Error(`${item}: a port is [HOST:]CONTAINER[/tcp|udp]`);
      const hostPort = m[1] ? Number(m[1]) : 0;
      const containerPort = Number(m[2]);
      if (hostPort > 65535 || containerPort < 1 || containerPort > 65535) {
        throw new Error(`${item}: ports are 1 to 65535`);
      }
      return { hostPort, containerPort, protocol: m[3] ?? "tcp" };
    });
}

/** One KEY=value per line; blank lines dropped. */
export function parseEnv(text: string): string[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
}
