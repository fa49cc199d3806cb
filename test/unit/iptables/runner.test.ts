// The runner against real iptables, inside a network namespace created for this test (never
// the root namespace: the driver below runs under `ip netns exec`).
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseFilterSave } from "../../../src/diagnose/filter.js";
import { backendOfVersion } from "../../../src/iptables/runner.js";
import { parseSave } from "../../../src/iptables/save.js";

const ns = `pvenat-runner-${randomBytes(3).toString("hex")}`;
let dir: string;
let driver: string;

// Runs one runner call in the namespace: mode, then an op ("restore" reads stdin, "save" table).
const DRIVER = `
import { createRunner, saveFilter } from ${JSON.stringify(join(process.cwd(), "src/iptables/runner.ts"))};
async function main() {
  const [mode, op, arg] = process.argv.slice(2);
  const r = await createRunner(mode);
  const out = { backend: r.backend, warning: r.warning ?? null };
  try {
    if (op === "restore") {
      const chunks = [];
      for await (const c of process.stdin) chunks.push(c);
      await r.restore(Buffer.concat(chunks).toString());
    } else if (op === "save") out.save = await r.save(arg, process.argv[5] === "-c");
    else if (op === "filter") out.save = await saveFilter(r.backend);
  } catch (e) {
    out.error = { name: e.name, message: e.message, exitCode: e.exitCode, stderr: e.stderr };
  }
  process.stdout.write(JSON.stringify(out));
}
main();
`;

function inNs(args: string[], input = ""): Record<string, unknown> {
  const r = spawnSync("ip", ["netns", "exec", ns, process.execPath, driver, ...args], {
    input,
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`driver failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync("ip", ["netns", "exec", ns, cmd, ...args], { encoding: "utf8", input });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pvenat-runner-"));
  driver = join(dir, "driver.cjs");
  await build({
    stdin: { contents: DRIVER, resolveDir: process.cwd(), loader: "ts" },
    outfile: driver,
    bundle: true,
    platform: "node",
    format: "cjs",
    logLevel: "warning",
  });
  execFileSync("ip", ["netns", "add", ns]);
});

afterAll(async () => {
  spawnSync("ip", ["netns", "del", ns]);
  await rm(dir, { recursive: true, force: true });
});

const PAYLOAD =
  "*nat\n:PVENAT-TEST - [0:0]\n-A PVENAT-TEST -p tcp -m tcp --dport 822 -j DNAT --to-destination 10.10.10.107:22\nCOMMIT\n";

describe("iptables runner (in a fresh namespace)", () => {
  it.each(["nft", "legacy"] as const)("%s: restore then save shows the rule", (mode) => {
    expect(inNs([mode, "restore"], PAYLOAD)).toEqual({ backend: mode, warning: null });
    const saved = inNs([mode, "save", "nat"]);
    expect(saved.save).toContain(":PVENAT-TEST - [0:0]");
    expect(saved.save).toContain(
      "-A PVENAT-TEST -p tcp -m tcp --dport 822 -j DNAT --to-destination 10.10.10.107:22",
    );
    const withCounters = inNs([mode, "save", "nat", "-c"]);
    expect(withCounters.save).toContain("[0:0] -A PVENAT-TEST -p tcp");
  });

  it("nft: a save without counters lists that table only (-S), and parses as iptables-nft-save's", () => {
    sh(
      "iptables-nft-restore",
      ["--noflush"],
      [
        "*nat",
        ":PVENAT-PREROUTING - [0:0]",
        ":PVENAT-107-DNAT - [0:0]",
        "-A PREROUTING -j PVENAT-PREROUTING",
        "-A PVENAT-PREROUTING -i vmbr0 -j PVENAT-107-DNAT",
        '-A PVENAT-107-DNAT -d 203.0.113.10/32 -p tcp -m tcp --dport 822 -m comment --comment "pve-nat vm107 firewall/107.fw:4" -j DNAT --to-destination 10.10.10.107:22',
        "COMMIT",
        "*raw",
        ":PVENAT-RAW - [0:0]",
        "-A PREROUTING -j PVENAT-RAW",
        "-A PVENAT-RAW -i fwbr+ -j CT --zone 1",
        "COMMIT",
        "",
      ].join("\n"),
    );
    const nat = String(inNs(["nft", "save", "nat"]).save);
    const raw = String(inNs(["nft", "save", "raw"]).save);
    // iptables-nft-save would fetch every table's rules; -S prints no "# Generated" line.
    expect(`${nat}${raw}`).not.toContain("# Generated");
    const live = parseSave(nat, raw);
    expect(live).toEqual(
      parseSave(sh("iptables-nft-save", ["-t", "nat"]), sh("iptables-nft-save", ["-t", "raw"])),
    );
    expect(live.chains.get("PVENAT-RAW")).toEqual(["-A PVENAT-RAW -i fwbr+ -j CT --zone 1"]);
    expect(live.jumps).toHaveLength(2);
  });

  it.each(["nft", "legacy"] as const)(
    "%s: the filter table reads as iptables-save prints it (nft: that table only)",
    (mode) => {
      // pve-firewall's shape: policies, its chains, conntrack and comment matches, jumps.
      sh(
        `iptables-${mode}-restore`,
        [],
        [
          "*filter",
          ":INPUT ACCEPT [0:0]",
          ":FORWARD DROP [0:0]",
          ":OUTPUT ACCEPT [0:0]",
          ":PVEFW-FORWARD - [0:0]",
          ":tap107i0-IN - [0:0]",
          "-A FORWARD -j PVEFW-FORWARD",
          "-A PVEFW-FORWARD -m conntrack --ctstate INVALID -j DROP",
          "-A PVEFW-FORWARD -o fwbr107i0 -j tap107i0-IN",
          '-A tap107i0-IN -p tcp -m tcp --dport 22 -m comment --comment "PVESIG:x" -j ACCEPT',
          "-A tap107i0-IN -j DROP",
          "COMMIT",
          "",
        ].join("\n"),
      );
      const text = String(inNs([mode, "filter"]).save);
      if (mode === "nft") expect(text).not.toContain("# Generated");
      const table = parseFilterSave(text);
      expect(table).toEqual(parseFilterSave(sh(`iptables-${mode}-save`, ["-t", "filter"])));
      expect(table.policies.get("FORWARD")).toBe("DROP");
      expect(table.chains.get("tap107i0-IN")).toHaveLength(2);
      // The auto-detection test below looks for PVEFW- chains: leave none behind.
      sh(`iptables-${mode}-restore`, [], "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n");
    },
  );

  it("a rejected payload throws CommandError carrying stderr and the exit code", () => {
    const out = inNs(["nft", "restore"], "*nat\n-A NO-SUCH-CHAIN -j ACCEPT\nCOMMIT\n");
    expect(out.error).toMatchObject({ name: "CommandError", exitCode: 1 });
    expect((out.error as { stderr: string }).stderr).toMatch(/line 2 failed|NO-SUCH-CHAIN/);
    expect((out.error as { message: string }).message).toContain("iptables-nft-restore");
  });

  it("--noflush leaves chains pve-nat did not write alone", () => {
    sh("iptables-nft-restore", [], "*nat\n:OTHER - [0:0]\n-A OTHER -j RETURN\nCOMMIT\n");
    inNs(["nft", "restore"], "*nat\n:PVENAT-TEST - [0:0]\nCOMMIT\n");
    const saved = String(inNs(["nft", "save", "nat"]).save);
    expect(saved).toContain("-A OTHER -j RETURN");
    expect(saved).not.toContain("--dport 822");
  });

  it("auto follows Debian's alternative, unless PVEFW- chains exist only in the other backend", () => {
    const selected = execFileSync("iptables", ["--version"], { encoding: "utf8" }).includes(
      "nf_tables",
    )
      ? "nft"
      : "legacy";
    const other = selected === "nft" ? "legacy" : "nft";
    expect(inNs(["auto", "save", "nat"])).toMatchObject({ backend: selected, warning: null });
    sh(`iptables-${other}-restore`, [], "*filter\n:PVEFW-FORWARD - [0:0]\nCOMMIT\n");
    const out = inNs(["auto", "save", "nat"]);
    expect(out.backend).toBe(other);
    expect(out.warning).toContain(`pve-firewall's PVEFW- chains are in ${other}`);
    // Once the selected backend has them too, it wins again.
    sh(`iptables-${selected}-restore`, [], "*filter\n:PVEFW-FORWARD - [0:0]\nCOMMIT\n");
    expect(inNs(["auto", "save", "nat"])).toMatchObject({ backend: selected, warning: null });
  });
});

describe("backendOfVersion", () => {
  it.each([
    ["iptables v1.8.9 (nf_tables)", "nft"],
    ["iptables v1.8.9 (legacy)", "legacy"],
    ["iptables v1.6.1", "legacy"],
    ["something else", null],
  ])("%j → %s", (text, backend) => {
    expect(backendOfVersion(text)).toBe(backend);
  });
});
