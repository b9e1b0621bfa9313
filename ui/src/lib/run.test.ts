import { describe, expect, it } from "vitest";
import { parseEnv, parsePorts } from "./run";

describe("parsePorts", () => {
  it("reads docker's -p forms", () => {
    expect(parsePorts("8080:80, 53/udp  9000:9000/tcp")).toEqual([
      { hostPort: 8080, containerPort: 80, protocol: "tcp" },
      { hostPort: 0, containerPort: 53, protocol: "udp" },
      { hostPort: 9000, containerPort: 9000, protocol: "tcp" },
    ]);
    expect(parsePorts("  ")).toEqual([]);
  });
  it("refuses what is not a port", () => {
    expect(() => parsePorts("80:http")).toThrow(/HOST:/);
    expect(() => parsePorts("70000:80")).toThrow(/1 to 65535/);
    expect(() => parsePorts("0")).toThrow(/1 to 65535/);
  });
});

describe("parseEnv", () => {
  it("keeps one variable per line", () => {
    expect(parseEnv("A=1\n\n B=two words \n")).toEqual(["A=1", "B=two words"]);
  });
});
