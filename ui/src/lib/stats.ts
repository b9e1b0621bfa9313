// The recent history of each running container's samples, for the list's live columns and the
// detail view's charts. Plain data: the views decide when to repaint.

import type { StatsSample } from "./bindings";

export type Series = {
  /** Seconds since the epoch, one per sample. */
  t: number[];
  cpu: number[];
  /** Bytes. */
  mem: number[];
  last: StatsSample;
};

export class StatsHistory {
  private series = new Map<string, Series>();

  /** `keep`: how many samples a container keeps (one a second). */
  constructor(private keep = 120) {}

  add(samples: StatsSample[], nowSeconds: number = Date.now() / 1000) {
    for (const s of samples) {
      let series = this.series.get(s.id);
      if (!series) {
        series = { t: [], cpu: [], mem: [], last: s };
        this.series.set(s.id, series);
      }
      series.t.push(nowSeconds);
      series.cpu.push(s.cpuPercent);
      series.mem.push(s.memUsage);
      series.last = s;
      if (series.t.length > this.keep) {
        const drop = series.t.length - this.keep;
        series.t.splice(0, drop);
        series.cpu.splice(0, drop);
        series.mem.splice(0, drop);
      }
    }
  }

  get(id: string): Series | undefined {
    return this.series.get(id);
  }

  /** Forgets containers that are no longer running. */
  retain(ids: string[]) {
    for (const id of [...this.series.keys()]) {
      if (!ids.includes(id)) this.series.delete(id);
    }
  }
}
