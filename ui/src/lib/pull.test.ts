import { describe, expect, it } from "vitest";
import { applyPullEvent, emptyPull, overallProgress } from "./pull";
import type { PullEvent } from "./bindings";

const layer = (id: string, status: string, current = 0, total = 0): PullEvent => ({
  kind: "layer",
  id,
  status,
  current,
  total,
});

describe("pull progress", () => {
  it("tracks each layer and the whole", () => {
    let s = emptyPull();
    s = applyPullEvent(s, { kind: "status", text: "latest: Pulling from library/busybox" });
    s = applyPullEvent(s, layer("a", "Pulling fs layer"));
    s = applyPullEvent(s, layer("b", "Pulling fs layer"));
    expect(overallProgress(s)).toBe(0);
    s = applyPullEvent(s, layer("a", "Downloading", 50, 100));
    s = applyPullEvent(s, layer("b", "Downloading", 100, 300));
    expect(s.layers.map((l) => l.current)).toEqual([50, 100]);
    expect(overallProgress(s)).toBeCloseTo(150 / 400);
    // Extraction counts again from 0: the bar does not go back.
    s = applyPullEvent(s, layer("a", "Extracting", 10, 100));
    expect(s.layers[0].current).toBe(50);
    s = applyPullEvent(s, layer("a", "Pull complete"));
    s = applyPullEvent(s, layer("b", "Already exists"));
    expect(s.layers.every((l) => l.done)).toBe(true);
    expect(overallProgress(s)).toBe(1);
    expect(s.messages).toEqual(["latest: Pulling from library/busybox"]);
  });

  it("never goes past the whole", () => {
    let s = applyPullEvent(emptyPull(), layer("a", "Downloading", 500, 100));
    expect(overallProgress(s)).toBe(1);
    s = applyPullEvent(emptyPull(), layer("x", "Waiting"));
    expect(overallProgress(s)).toBe(0);
  });
});
