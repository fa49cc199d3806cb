// Pure helpers of the package build (packaging/lib.mjs).
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  changelogDate,
  changelogVersion,
  compareVersions,
  debianVersion,
  renderControl,
  renderMd5sums,
  requiredSymbolVersions,
  unmetRequirements,
} from "../../../packaging/lib.mjs";

const REPO = path.resolve(import.meta.dirname, "../../..");

describe("requiredSymbolVersions", () => {
  const objdump = [
    "",
    "addon.node:     file format elf64-x86-64",
    "",
    "DYNAMIC SYMBOL TABLE:",
    "0000000000000000      DF *UND*\t0000000000000000 (GLIBC_2.2.5) memcpy",
    "0000000000000000      DF *UND*\t0000000000000000 (GLIBC_2.25) getrandom",
    "0000000000000000      DF *UND*\t0000000000000000 (GLIBC_2.9)  pipe2",
    "0000000000000000      DF *UND*\t0000000000000000 (GLIBCXX_3.4.21) _ZNSt7__cxx11",
    "0000000000000000      DF *UND*\t0000000000000000 (GCC_3.0)    _Unwind_Resume",
    "0000000000000000      DF *UND*\t0000000000000000 (CXXABI_1.3.9) _ZdlPvm",
    "0000000000000000      DF *UND*\t0000000000000000  napi_create_string_utf8",
    // Defined symbols are what the file offers, not what it needs.
    "00000000000a1b20 g    DF .text\t0000000000000010 (GLIBC_2.99) offered",
  ].join("\n");

  it("takes the highest version per namespace of undefined symbols only", () => {
    expect(requiredSymbolVersions(objdump)).toEqual({
      GLIBC: "2.25",
      GLIBCXX: "3.4.21",
      GCC: "3.0",
      CXXABI: "1.3.9",
    });
  });
});

describe("unmetRequirements against Debian 12", () => {
  it.each([
    [{ GLIBC: "2.25", GLIBCXX: "3.4.22" }, []],
    [{ GLIBC: "2.36" }, []],
    [{ GLIBC: "2.38", GLIBCXX: "3.4.31" }, ["GLIBC_2.38 > 2.36", "GLIBCXX_3.4.31 > 3.4.30"]],
    [{ CXXABI: "9.9" }, []],
  ])("%j → %j", (required, unmet) => {
    expect(unmetRequirements(required)).toEqual(unmet);
  });
});

describe("compareVersions", () => {
  it.each([
    ["2.9", "2.25", -1],
    ["2.25", "2.25", 0],
    ["3.4.30", "3.4.3", 1],
    ["2", "2.0.0", 0],
  ])("%s vs %s → %i", (a, b, r) => {
    expect(compareVersions(a, b)).toBe(r);
  });
});

describe("debianVersion", () => {
  it.each([
    ["0.1.0", "0.1.0-1"],
    ["1.2.3-rc.1", "1.2.3~rc.1-1"],
    ["2.0.0+build5", "2.0.0+build5-1"],
  ])("%s → %s", (upstream, deb) => {
    expect(debianVersion(upstream)).toBe(deb);
  });

  it.each(["1.2", "v1.2.3", "1.2.3 beta"])("%s is refused", (bad) => {
    expect(() => debianVersion(bad)).toThrow(/cannot become a Debian version/);
  });
});

describe("packaging/debian/changelog", () => {
  const text = readFileSync(path.join(REPO, "packaging/debian/changelog"), "utf8");
  it("its newest entry is package.json's version (the build refuses a mismatch)", () => {
    const { version } = JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8"));
    expect(changelogVersion(text)).toBe(debianVersion(version));
  });
  it("has a parseable date", () => {
    expect(changelogDate(text).getUTCFullYear()).toBeGreaterThanOrEqual(2026);
  });
});

describe("renderControl", () => {
  it("renders the fields dpkg needs, the description folded", () => {
    const text = renderControl({
      version: "0.1.0-1",
      installedSizeKiB: 110000,
      depends: ["libc6 (>= 2.34)", "iptables"],
      maintainer: "A <a@b.example>",
    });
    const fields = Object.fromEntries(
      text
        .split("\n")
        .filter((l) => /^[A-Z][A-Za-z-]+: /.test(l))
        .map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 2)]),
    );
    expect(fields).toEqual({
      Package: "pve-nat",
      Version: "0.1.0-1",
      Architecture: "amd64",
      Maintainer: "A <a@b.example>",
      "Installed-Size": "110000",
      Depends: "libc6 (>= 2.34), iptables",
      Section: "net",
      Priority: "optional",
      Description: "port forwarding and outbound NAT for Proxmox VE guests",
    });
    // Every continuation line starts with a space and stays under 80 columns.
    const continuation = text
      .split("\n")
      .slice(text.split("\n").findIndex((l) => l.startsWith("Description")) + 1);
    for (const line of continuation.filter((l) => l !== "")) {
      expect(line.startsWith(" ")).toBe(true);
      expect(line.length).toBeLessThan(80);
    }
    expect(text.endsWith("\n")).toBe(true);
  });
});

describe("renderMd5sums", () => {
  it("one sorted line per file, path without the leading slash", () => {
    expect(
      renderMd5sums([
        ["usr/share/doc/pve-nat/copyright", "b".repeat(32)],
        ["/usr/bin/pve-nat", "a".repeat(32)],
      ]),
    ).toBe(
      `${"a".repeat(32)}  usr/bin/pve-nat\n${"b".repeat(32)}  usr/share/doc/pve-nat/copyright\n`,
    );
  });
});
