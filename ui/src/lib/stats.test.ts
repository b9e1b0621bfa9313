import { describe, expect, it } from "vitest";
import type { StatsSample } from "./bindings";
import { formatBinary, formatPercent } from "./format";
import { StatsHistory } from "./stats";

const sample = (id: string, cpu: number, mem: number): StatsSample => ({
  id,
  cpuPercent: cpu,
  memUsage: mem,
  memLimit: 1 << 30,
  netRx: 0,
  netTx: 0,
  blockRead: 0,
  blockWrite: 0,
  pids: 1,
});

describe("StatsHistory", () => {
  it("keeps the newest samples per container", () => {
    const h = new StatsHistory(3);
    for (let i = 0; i < 5; i++) h.add([sample("a", i, i * 10), sample("b", 1, 1)], 100 + i);
    const a = h.get("a")!;
    expect(a.t).toEqual([102, 103, 104]);
    expect(a.cpu).toEqual([2, 3, 4]);
    expect(a.mem).toEqual([20, 30, 40]);
    expect(a.last.cpuPercent).toBe(4);
    h.retain(["b"]);
    expect(h.get("a")).toBeUndefined();
    expect(h.get("b")!.t.length).toBe(3);
  });
});

describe("stats formats", () => {
  it("prints memory and CPU as docker stats does", () => {
    expect(formatBinary(0)).toBe("0B");
    expect(formatBinary(512)).toBe("512B");
    expect(formatBinary(1536)).toBe("1.5KiB");
    expect(formatBinary(12.345 * 1024 * 1024)).toBe("12.35MiB");
    expect(formatBinary(2 * 1024 ** 3)).toBe("2GiB");
    expect(formatPercent(0.254)).toBe("0.25%");
    expect(formatPercent(NaN)).toBe("0.00%");
  });
});
