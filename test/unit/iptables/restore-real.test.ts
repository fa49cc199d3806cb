// Real iptables-restore / iptables-save in a fresh network namespace (never the root one):
// rendered payloads apply, read back exactly as rendered (so diffLive sees no drift), partial
// updates keep the tables consistent, and flush leaves foreign rules byte-identical.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ownerChain } from "../../../src/iptables/chains.js";
import { diffLive, renderFlush, renderRestore, ruleLine } from "../../../src/iptables/render.js";
import { parseSave } from "../../../src/iptables/save.js";
import type { NatPlan } from "../../../src/model.js";
import { compile } from "../../../src/nat/compile.js";
import { input, nic } from "../../helpers/build.js";
import { danglingTargets } from "../../helpers/payload.js";

/** Runs `body` in a fresh namespace that is deleted afterwards, whatever happens. */
function inNamespace(body: (ns: string) => void): void {
  const ns = `pvenat-render-${randomBytes(4).toString("hex")}`;
  execFileSync("ip", ["netns", "add", ns]);
  try {
    body(ns);
  } finally {
    execFileSync("ip", ["netns", "del", ns], { stdio: "ignore" });
  }
}

const FOREIGN = `*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A OUTPUT -d 198.51.100.99/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.10.10.99:8080
-A DOCKER -i docker0 -j RETURN
COMMIT
*raw
-A PREROUTING -i vmbr9 -j CT --notrack
COMMIT
`;

function plan(stopped108 = false, hairpin = false): NatPlan {
  return compile(
    input({
      config: { hairpin, conntrackZoneFix: "auto" },
      cluster: {
        aliases: { partner: "192.0.2.0/24" },
        ipsets: { office: ["198.51.100.0/24", "!198.51.100.128/25", "198.51.100.200"] },
        rules: [
          "OUT ACCEPT -source 10.10.10.0/24 -dest partner -p udp -sport 500 # NAT:203.0.113.5",
        ],
      },
      host: { rules: ["IN ACCEPT -dest 10.10.10.201 -p tcp -dport 80 # NAT:8082"] },
      guests: {
        107: {
          nics: [nic(0, "10.10.10.107/24", true)],
          fw: {
            rules: [
              "IN ACCEPT -source +dc/office -p tcp -dport 22 # NAT:822",
              "IN ACCEPT -p tcp -dport 80,443,8443 # NAT",
              "IN ACCEPT -p tcp -sport 1024:65535 -dport 25 # NAT:2525",
              "OUT ACCEPT # NAT",
            ],
          },
        },
        108: {
          kind: "qemu",
          nics: [nic(0, "10.10.10.108/24")],
          state: stopped108 ? "stopped" : "running",
          fw: {
            rules: [
              "IN ACCEPT -p udp -dport 9000:9010 # NAT:8000:8010",
              "OUT ACCEPT -p tcp -dport 25 # NAT:203.0.113.5",
              "IN ACCEPT -p tcp -sport 1000,2000 -dport 22 # NAT:2223",
              "OUT ACCEPT -p udp -sport 53,5353 -dport 53,853 # NAT",
            ],
          },
        },
      },
    }),
  );
}

describe.each([
  {
    backend: "nft",
    cmd: "iptables-nft",
    restore: "iptables-nft-restore",
    save: "iptables-nft-save",
  },
  {
    backend: "legacy",
    cmd: "iptables-legacy",
    restore: "iptables-legacy-restore",
    save: "iptables-legacy-save",
  },
])("real iptables ($backend) in a namespace", (b) => {
  let ns = "";
  const exec = (cmd: string, args: string[], stdin?: string) =>
    execFileSync("ip", ["netns", "exec", ns, cmd, ...args], { input: stdin, encoding: "utf8" });
  const restore = (payload: string) => exec(b.restore, ["--noflush"], payload);
  // iptables-save's "# Generated/Completed" lines carry a timestamp.
  const save = (table: "nat" | "raw", counters = false) =>
    exec(b.save, ["-t", table, ...(counters ? ["-c"] : [])])
      .split("\n")
      .filter((l) => !l.startsWith("#"))
      .join("\n");
  const live = () => parseSave(save("nat"), save("raw"));

  it("applies, reads back without drift, updates one guest, flushes to exactly the foreign state", () =>
    inNamespace((name) => {
      ns = name;
      restore(FOREIGN);
      const before = { nat: save("nat"), raw: save("raw") };
      expect(before.nat).toContain("-A DOCKER -i docker0 -j RETURN");

      // Full apply.
      const full = plan();
      const payload = renderRestore({
        plan: full,
        owners: [107, 108, "NODE"],
        entry: true,
        live: live(),
      });
      expect(danglingTargets(payload, live())).toEqual([]);
      restore(payload);
      expect(diffLive(full, live())).toEqual({ owners: [], entry: false });
      expect(renderRestore({ plan: full, owners: [], entry: false, live: live() })).toBe("");
      const nat = save("nat");
      expect(nat).toMatch(
        /^\*nat\n(:.*\n)+-A PREROUTING -j PVENAT-PREROUTING\n-A PREROUTING -m addrtype/,
      );
      for (const line of FOREIGN.split("\n").filter(
        (l) => l.startsWith("-A") && !l.includes("CT --notrack"),
      )) {
        expect(nat).toContain(`${line}\n`);
      }

      // Counters are keyed by exactly the rendered rule lines.
      const counted = parseSave(save("nat", true), save("raw", true));
      for (const oc of full.chains) {
        for (const [kind, rules] of [
          ["DNAT", oc.dnat],
          ["SNAT", oc.snat],
        ] as const) {
          const chain = ownerChain(oc.owner, kind);
          for (const r of rules)
            expect(counted.counters.get(`${chain} ${ruleLine(chain, r)}`)).toEqual({
              packets: 0,
              bytes: 0,
            });
        }
      }

      // One guest stops: a partial payload removes its chains; a full re-render of another is a no-op drift-wise.
      const partial = plan(true);
      const p2 = renderRestore({ plan: partial, owners: [108], entry: false, live: live() });
      expect(danglingTargets(p2, live())).toEqual([]);
      restore(p2);
      expect(diffLive(partial, live())).toEqual({ owners: [], entry: false });
      expect(save("nat")).not.toContain("PVENAT-108");

      // It starts again with hairpin on: only its chains plus the entry chains change.
      const again = plan(false, true);
      expect(diffLive(again, live()).owners).toEqual(["NODE", 107, 108]);
      restore(
        renderRestore({ plan: again, owners: ["NODE", 107, 108], entry: true, live: live() }),
      );
      expect(diffLive(again, live())).toEqual({ owners: [], entry: false });

      // Duplicate builtin jump (e.g. a second, older instance) is repaired.
      exec(b.cmd, ["-t", "nat", "-A", "PREROUTING", "-j", "PVENAT-PREROUTING"]);
      expect(diffLive(again, live())).toEqual({ owners: [], entry: true });
      restore(renderRestore({ plan: again, owners: [], entry: false, live: live() }));
      expect(diffLive(again, live())).toEqual({ owners: [], entry: false });
      expect(save("nat").match(/-A PREROUTING -j PVENAT-PREROUTING\n/g)).toHaveLength(1);

      // Flush: exactly the foreign state again.
      const flush = renderFlush(live());
      restore(flush);
      expect(save("nat")).toBe(before.nat);
      expect(save("raw")).toBe(before.raw);
      expect(renderFlush(live())).toBe("");
    }));
});
