// src/native/tables.c: the drift check skips its iptables reads while the kernel's token holds,
// so the token must move with every change of the nat or raw table (by anyone, with any tool)
// and hold while they only gain traffic. Checked against real iptables in a namespace this test
// creates (SPEC §7); the addon runs there in a small driver, as the daemon would.
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error: plain ESM build script without type declarations
import { compileNative } from "../../../packaging/native.mjs";

const ns = `pvenat-tables-${randomBytes(3).toString("hex")}`;
let dir: string;
let driver: string;

const DRIVER = `
const mod = { exports: {} };
process.dlopen(mod, process.argv[2]);
const out = {};
for (const b of process.argv.slice(3)) {
  // "legacy=filter,nat": the token of those legacy tables; "legacy=": of none.
  const [backend, tables] = b.split("=");
  const args = tables === undefined ? [backend] : [backend, tables === "" ? [] : tables.split(",")];
  try { out[b] = mod.exports.tablesToken(...args); } catch (e) { out[b] = "threw: " + e.message; }
}
process.stdout.write(JSON.stringify(out));
`;

function tokens(...backends: string[]): Record<string, string | null> {
  const r = spawnSync(
    "ip",
    ["netns", "exec", ns, process.execPath, driver, path.join(dir, "pve-nat.node"), ...backends],
    { encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`driver failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
const token = (backend: "nft" | "legacy") => tokens(backend)[backend] ?? null;

function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync("ip", ["netns", "exec", ns, cmd, ...args], { encoding: "utf8", input });
}

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "pvenat-tables-"));
  compileNative({ repo: process.cwd(), out: path.join(dir, "pve-nat.node") });
  driver = path.join(dir, "driver.cjs");
  writeFileSync(driver, DRIVER);
  execFileSync("ip", ["netns", "add", ns]);
});

afterAll(() => {
  spawnSync("ip", ["netns", "del", ns]);
  rmSync(dir, { recursive: true, force: true });
});

const nat = (chain: string, rule: string) =>
  `*nat\n:${chain} - [0:0]\n-A ${chain} ${rule}\nCOMMIT\n`;

describe("tablesToken (in a fresh namespace)", () => {
  it("nft: the generation id, moved by every committed change and by nothing else", () => {
    const t0 = token("nft");
    expect(t0).toMatch(/^nft:\d+$/);
    expect(token("nft")).toBe(t0);
    sh("iptables-nft-restore", ["--noflush"], nat("PVENAT-1", "-p tcp --dport 80 -j RETURN"));
    const t1 = token("nft");
    expect(t1).not.toBe(t0);
    // Reading changes nothing.
    sh("iptables-nft", ["-t", "nat", "-S"]);
    sh("iptables-nft-save", []);
    expect(token("nft")).toBe(t1);
    // Someone else's change, in a table pve-nat does not read: still "read again".
    sh("iptables-nft", ["-t", "filter", "-N", "OTHER"]);
    const t2 = token("nft");
    expect(t2).not.toBe(t1);
    sh("iptables-nft", ["-t", "raw", "-N", "PVENAT-RAW"]);
    expect(token("nft")).not.toBe(t2);
  });

  it("legacy: the tables' contents, counters left out", () => {
    const t0 = token("legacy");
    expect(t0).toMatch(/^legacy:[0-9a-f]{16}:[0-9a-f]{16}$/);
    expect(token("legacy")).toBe(t0);
    sh("iptables-legacy-restore", ["--noflush"], nat("PVENAT-1", "-p tcp --dport 80 -j RETURN"));
    const t1 = token("legacy");
    expect(t1).not.toBe(t0);
    // The same rules with other counters (as traffic leaves them), and zeroed: the same token.
    sh(
      "iptables-legacy-restore",
      ["--noflush", "-c"],
      "*nat\n:PVENAT-1 - [0:0]\n[7:420] -A PVENAT-1 -p tcp -m tcp --dport 80 -j RETURN\nCOMMIT\n",
    );
    expect(sh("iptables-legacy-save", ["-c", "-t", "nat"])).toContain("[7:420] -A PVENAT-1");
    expect(token("legacy")).toBe(t1);
    sh("iptables-legacy", ["-t", "nat", "-Z"]);
    expect(token("legacy")).toBe(t1);
    // A rule replaced by one of the same size (one port byte differs): another token; put
    // back, the first one.
    const replaceRule = (dport: string) =>
      sh("iptables-legacy", [
        "-t",
        "nat",
        "-R",
        "PVENAT-1",
        "1",
        "-p",
        "tcp",
        "--dport",
        dport,
        "-j",
        "RETURN",
      ]);
    replaceRule("81");
    expect(token("legacy")).not.toBe(t1);
    replaceRule("80");
    expect(token("legacy")).toBe(t1);
    // Another rule in nat, then in raw: each moves its half.
    sh("iptables-legacy", ["-t", "nat", "-A", "PVENAT-1", "-p", "udp", "-j", "RETURN"]);
    const t2 = token("legacy");
    expect(t2).not.toBe(t1);
    expect(t2?.split(":")[2]).toBe(t1?.split(":")[2]);
    sh("iptables-legacy", ["-t", "raw", "-N", "PVENAT-RAW"]);
    const t3 = token("legacy");
    expect(t3?.split(":")[1]).toBe(t2?.split(":")[1]);
    expect(t3?.split(":")[2]).not.toBe(t2?.split(":")[2]);
    // Undone: the tables read as before, and so does the token.
    sh("iptables-legacy", ["-t", "raw", "-X", "PVENAT-RAW"]);
    expect(token("legacy")).toBe(t2);
    // nf_tables changes are not legacy's.
    sh("iptables-nft", ["-t", "nat", "-N", "NFT-ONLY"]);
    expect(token("legacy")).toBe(t2);
  });

  it("legacy, given tables (the backend detector): moves with any of those tables only", () => {
    // The backend detector asks with the names in /proc/net/ip_tables_names, as
    // iptables-legacy-save lists them; pve-firewall's chains are in filter.
    const both = "legacy=filter,nat";
    const t0 = tokens(both)[both];
    expect(t0).toMatch(/^legacy-tables:2:[0-9a-f]{16}$/);
    expect(tokens(both)[both]).toBe(t0);
    expect(tokens("legacy=nat,filter")["legacy=nat,filter"]).not.toBe(t0);
    sh("iptables-legacy-restore", ["--noflush"], "*filter\n:PVEFW-FORWARD - [0:0]\nCOMMIT\n");
    const t1 = tokens(both)[both];
    expect(t1).not.toBe(t0);
    const natOnly = tokens("legacy=nat")["legacy=nat"];
    sh("iptables-legacy", ["-t", "filter", "-X", "PVEFW-FORWARD"]);
    expect(tokens(both)[both]).toBe(t0);
    // A change in a table not asked about leaves the token.
    sh("iptables-legacy", ["-t", "raw", "-N", "OTHER-RAW"]);
    expect(tokens(both)[both]).toBe(t0);
    expect(tokens("legacy=nat")["legacy=nat"]).toBe(natOnly);
    sh("iptables-legacy", ["-t", "nat", "-N", "OTHER-NAT"]);
    expect(tokens("legacy=nat")["legacy=nat"]).not.toBe(natOnly);
    expect(tokens("legacy=")["legacy="]).toMatch(/^legacy-tables:0:/);
    expect(tokens("legacy=,nat")["legacy=,nat"]).toMatch(/^threw: .*short string/);
  });

  it("refuses a backend it does not know", () => {
    expect(tokens("ebtables").ebtables).toMatch(/^threw: .*nft or legacy/);
  });
});
