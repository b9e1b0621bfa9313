import { describe, expect, it } from "vitest";
import { formatAge, formatBytes, shortId } from "./format";

describe("formatBytes", () => {
  it("prints decimal units like the docker CLI", () => {
    expect(formatBytes(0)).toBe("0B");
    expect(formatBytes(999)).toBe("999B");
    expect(formatBytes(1234)).toBe("1.23kB");
    expect(formatBytes(45_600)).toBe("45.6kB");
    expect(formatBytes(4_260_000)).toBe("4.26MB");
    expect(formatBytes(250_000_000)).toBe("250MB");
    expect(formatBytes(-5)).toBe("0B");
  });
});

describe("formatAge", () => {
  const now = 1_000_000;
  it("names seconds, minutes, hours and days", () => {
    expect(formatAge(now, now)).toBe("Less than a second ago");
    expect(formatAge(now - 5, now)).toBe("5 seconds ago");
    expect(formatAge(now - 60, now)).toBe("About a minute ago");
    expect(formatAge(now - 180, now)).toBe("3 minutes ago");
    expect(formatAge(now - 3600, now)).toBe("About an hour ago");
    expect(formatAge(now - 5 * 3600, now)).toBe("5 hours ago");
    expect(formatAge(now - 3 * 86400, now)).toBe("3 days ago");
    expect(formatAge(now + 10, now)).toBe("Less than a second ago");
  });
});

describe("shortId", () => {
  it("drops the algorithm and keeps 12 digits", () => {
    expect(shortId("sha256:0123456789abcdef0123")).toBe("0123456789ab");
    expect(shortId("fedcba9876543210")).toBe("fedcba987654");
  });
});
