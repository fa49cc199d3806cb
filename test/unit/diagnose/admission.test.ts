// Has pve-firewall admitted a forward yet (issue 12 item 3)? Which forwards are judged (only
// where the guest firewall filters, SPEC §8, and its .fw accepts the traffic), and the verdict
// of the NIC's IN chain as pve-firewall builds it (Firewall.pm ruleset_create_vm_chain shapes).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { admissionTargets, judgeAdmission, pendingOf } from "../../../src/diagnose/admission.js";
import { parseFilterSave } from "../../../src/diagnose/filter.js";
import type { NatPlan, NodeInput } from "../../../src/model.js";
import { compile } from "../../../src/nat/compile.js";
import { loadNode } from "../../../src/pve/node.js";
import { guestConf, guestFw, natConf, writeNode } from "../../helpers/simnode.js";

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), "pvenat-admission-"));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const NAT_RULE = "IN ACCEPT -p tcp -dport 22 # NAT:2230 ssh";

interface Spec {
  cluster?: string | null;
  guestFwEnable?: boolean;
  nicFirewall?: boolean;
  kind?: "qemu" | "lxc";
  rules?: string[];
  host?: string | null;
}

async function node(spec: Spec = {}): Promise<{ plan: NatPlan; input: NodeInput }> {
  const kind = spec.kind ?? "qemu";
  await writeNode({
    root,
    config: natConf({ settings: { public_address: "203.0.113.10" } }),
    cluster: spec.cluster === undefined ? "[OPTIONS]\nenable: 1\n" : spec.cluster,
    host: spec.host ?? null,
    guests: [
      {
        vmid: 130,
        kind,
        conf: guestConf({
          vmid: 130,
          kind,
          ip: "10.10.10.130",
          firewall: spec.nicFirewall ?? true,
        }),
        fw: guestFw(spec.rules ?? [NAT_RULE], { enable: spec.guestFwEnable ?? true }),
      },
    ],
  });
  const input = await loadNode(
    { path: (p) => path.join(root, p), configPath: path.join(root, "etc/pve-nat/pve-nat.conf") },
    { pending: new Set([130]) },
  );
  return { plan: compile(input), input };
}

/** pve-firewall's filter table for a guest NIC (shapes of Firewall.pm), with `extra` rules of
 *  the NIC's IN chain where the guest's [RULES] go. */
function pvefw(chain: string | null, extra: string[] = []): string {
  const lines = [
    "*filter",
    ":INPUT ACCEPT [0:0]",
    ":FORWARD ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    ":PVEFW-Drop - [0:0]",
    ":PVEFW-FORWARD - [0:0]",
    ":PVEFW-FWBR-IN - [0:0]",
    "-A FORWARD -j PVEFW-FORWARD",
    "-A PVEFW-Drop -p tcp -m multiport --dports 135,139,445 -j DROP",
    "-A PVEFW-Drop -m addrtype --dst-type BROADCAST -j DROP",
    "-A PVEFW-FORWARD -m conntrack --ctstate INVALID -j DROP",
    "-A PVEFW-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A PVEFW-FORWARD -m physdev --physdev-in fwln+ --physdev-is-bridged -j PVEFW-FWBR-IN",
  ];
  if (chain) {
    lines.push(
      `:${chain} - [0:0]`,
      `-A PVEFW-FWBR-IN -m physdev --physdev-out ${chain.slice(0, -3)} --physdev-is-bridged -j ${chain}`,
      `-A ${chain} -p udp -m udp --sport 67 --dport 68 -j ACCEPT`,
      `-A ${chain} -m conntrack --ctstate INVALID -j DROP`,
      `-A ${chain} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
      ...extra.map((r) => `-A ${chain} ${r}`),
      `-A ${chain} -j PVEFW-Drop`,
      `-A ${chain} -j DROP`,
      `-A ${chain} -m comment --comment "PVESIG:Xy1"`,
    );
  }
  lines.push("COMMIT", "");
  return lines.join("\n");
}

describe("which forwards are judged", () => {
  it("a qemu guest whose firewall filters: its NIC's tap chain", async () => {
    const { plan, input } = await node();
    const t = admissionTargets(plan, input);
    expect(t.map((x) => [x.vmid, x.chain, x.proto, x.ports])).toEqual([
      [130, "tap130i0-IN", "tcp", "22"],
    ]);
    expect(plan.forwards[t[0]?.index ?? -1]?.public.ports).toBe("2230");
  });

  it("an LXC guest: veth chain", async () => {
    const { plan, input } = await node({ kind: "lxc" });
    expect(admissionTargets(plan, input).map((x) => x.chain)).toEqual(["veth130i0-IN"]);
  });

  it.each<[string, Spec]>([
    ["datacenter firewall off", { cluster: "[OPTIONS]\nenable: 0\n" }],
    ["no cluster.fw", { cluster: null }],
    ["guest firewall off", { guestFwEnable: false }],
    ["NIC without firewall=1", { nicFirewall: false }],
    ["nftables firewall (no iptables NIC chains)", { host: "[OPTIONS]\nnftables: 1\n" }],
    // The guest's own rules drop it first: it will never be admitted; check says why.
    ["the .fw drops it", { rules: ["IN DROP -p tcp -dport 22", NAT_RULE] }],
  ])("none when %s", async (_t, spec) => {
    const { plan, input } = await node(spec);
    expect(plan.forwards.map((f) => f.state)).toEqual(["active"]);
    expect(admissionTargets(plan, input)).toEqual([]);
  });

  it("only the given owners", async () => {
    const { plan, input } = await node();
    expect(admissionTargets(plan, input, new Set([131]))).toEqual([]);
    expect(admissionTargets(plan, input, new Set([130]))).toHaveLength(1);
  });
});

describe("the NIC chain's verdict", () => {
  const judge = async (save: string) => {
    const { plan, input } = await node();
    const m = judgeAdmission(admissionTargets(plan, input), parseFilterSave(save));
    return { plan, m, state: [...m.values()].map((a) => a.state) };
  };

  it("pending while pve-firewall's chain lacks the port (ends in DROP)", async () => {
    const { m, plan, state } = await judge(pvefw("tap130i0-IN"));
    expect(state).toEqual(["pending"]);
    expect(pendingOf(m, 130, plan)).toEqual({
      state: "pending",
      ports: ["tcp/22"],
      chains: ["tap130i0-IN"],
    });
    expect(pendingOf(m, 131, plan)).toBeUndefined();
  });

  it("pending while pve-firewall has not created the NIC's chain yet", async () => {
    expect((await judge(pvefw(null))).state).toEqual(["pending"]);
  });

  it("accepted once the chain has the rule, as pve-firewall writes it", async () => {
    const { m, plan, state } = await judge(
      pvefw("tap130i0-IN", ["-p tcp -m tcp --dport 22 -j ACCEPT"]),
    );
    expect(state).toEqual(["accepted"]);
    expect(pendingOf(m, 130, plan)).toBeUndefined();
  });

  it.each([
    ["-p tcp -m multiport --dports 80,22 -j ACCEPT", "accepted"],
    ["-p tcp -m tcp --dport 1000:2000 -j ACCEPT", "pending"],
    ["-p udp -m udp --dport 22 -j ACCEPT", "pending"],
    ["-s 198.51.100.0/24 -p tcp -m tcp --dport 22 -j DROP", "pending"],
  ])("%s in the chain: %s", async (rule, want) => {
    expect((await judge(pvefw("tap130i0-IN", [rule]))).state).toEqual([want]);
  });

  it("nothing claimed where the walk cannot tell (a mark match before the drop)", async () => {
    const r = await judge(pvefw("tap130i0-IN", ["-m mark --mark 0x80000000/0x80000000 -j ACCEPT"]));
    expect(r.state).toEqual([]);
  });

  it("nothing claimed where pve-firewall does not run (no PVEFW-FORWARD)", async () => {
    const r = await judge("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n");
    expect(r.state).toEqual([]);
  });
});
