// Per-forward causes of `check`'s live diagnosis (diagnose/forwards.ts): every reason a forward
// cannot carry traffic, each `what — the fix`, judged from facts the shell read. One case per
// cause, each also shown absent when its fact is healthy (a diagnosis must not invent problems).
import { describe, expect, it } from "vitest";
import { parseFilterSave } from "../../../src/diagnose/filter.js";
import { diagnoseForwards, type NodeFacts } from "../../../src/diagnose/forwards.js";
import type { Diagnostic, GuestNic, NodeInput } from "../../../src/model.js";
import { compile } from "../../../src/nat/compile.js";
import { parseStorageCfg } from "../../../src/pve/hookscript.js";
import { fw, type GuestSpec, type InputSpec, input, nic } from "../../helpers/build.js";
import { filterSave } from "../../helpers/filtersave.js";

const HOOK = "local:snippets/pve-nat-hook";
const SNIPPET = "/var/lib/vz/snippets/pve-nat-hook";
const STORAGE = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup,snippets\n";

const filter = (policy: string, rules: string[] = [], chains: string[] = []) =>
  parseFilterSave(filterSave(policy, rules, chains));

/** A healthy node: every fact as it should be. */
function healthy(over: Partial<NodeFacts> = {}): NodeFacts {
  return {
    filter: filter("ACCEPT"),
    addresses: new Map([
      ["vmbr0", ["203.0.113.10/24"]],
      ["vmbr1", ["10.10.10.1/24"]],
    ]),
    daemon: null,
    storages: parseStorageCfg(STORAGE),
    existingFiles: new Set([SNIPPET]),
    ...over,
  };
}

function gwNic(over: Partial<GuestNic> = {}): GuestNic {
  return { ...nic(0, "10.10.10.107/24", true), gw: "10.10.10.1", ...over };
}

/** Guest 107 (qemu) with one forward public 822 → 22, hooked, firewall=1 NIC. */
function node(
  opts: {
    rules?: string[];
    guestOptions?: Record<string, string>;
    cluster?: InputSpec["cluster"];
    nic?: GuestNic;
    hookscript?: string | null;
    guest?: Partial<GuestSpec>;
    more?: InputSpec["guests"];
  } = {},
): NodeInput {
  const inp = input({
    cluster: opts.cluster === undefined ? { options: { enable: "1" } } : opts.cluster,
    guests: {
      107: {
        kind: "qemu",
        nics: [opts.nic ?? gwNic()],
        fw: {
          options: opts.guestOptions ?? { enable: "1" },
          rules: opts.rules ?? ["IN ACCEPT -p tcp -dport 22 # NAT:822"],
        },
        ...opts.guest,
      },
      ...opts.more,
    },
  });
  const g = inp.guests[107];
  if (g) g.conf.hookscript = opts.hookscript === undefined ? HOOK : opts.hookscript;
  return inp;
}

function diagnose(inp: NodeInput, facts: NodeFacts = healthy(), only: number | null = null) {
  return diagnoseForwards(compile(inp), inp, facts, only);
}

const lines = (ds: Diagnostic[]) => ds.map((d) => `${d.file}:${d.line}: ${d.severity}`);

describe("diagnoseForwards", () => {
  it("a healthy node: nothing to say", () => {
    expect(diagnose(node())).toEqual([]);
  });

  it("every message reads `what — the fix`", () => {
    const ds = diagnose(
      node({ rules: ["IN ACCEPT -p tcp -sport 822 -dport 22 # NAT"], hookscript: null }),
      healthy({
        filter: filter("DROP"),
        addresses: new Map([["vmbr0", ["203.0.113.9/24"]]]),
        daemon: { notRunning: true },
      }),
    );
    expect(ds.length).toBe(6);
    for (const d of ds) expect(d.message).toMatch(/^[^—]+ — [^—]+$/);
  });

  describe("FORWARD", () => {
    it("policy DROP and nothing accepting: error naming the policy and the rule to add", () => {
      const [d, ...rest] = diagnose(node(), healthy({ filter: filter("DROP") }));
      expect(rest).toEqual([]);
      expect(d).toMatchObject({ file: "iptables:filter", line: 0, severity: "error" });
      expect(d?.message).toBe(
        "forward firewall/107.fw:4 (tcp 203.0.113.10:822 → 10.10.10.107:22): the filter FORWARD policy is DROP and no rule accepts it — accept forwarded connections in both directions: iptables -I FORWARD -m conntrack --ctstate DNAT -j ACCEPT (and keep it in your firewall configuration)",
      );
    });

    it("policy DROP with a DOCKER chain: names Docker and points at DOCKER-USER", () => {
      const docker = filter(
        "DROP",
        [
          "-A FORWARD -j DOCKER-USER",
          "-A FORWARD -o docker0 -j DOCKER",
          "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
          "-A DOCKER-USER -j RETURN",
        ],
        ["DOCKER", "DOCKER-USER"],
      );
      const [d] = diagnose(node(), healthy({ filter: docker }));
      expect(d?.message).toMatch(
        /policy is DROP and no rule accepts it \(a DOCKER chain exists: Docker sets this policy when it starts\) — .*iptables -I DOCKER-USER -m conntrack --ctstate DNAT -j ACCEPT/,
      );
    });

    it("REJECT by an explicit rule: names that rule", () => {
      const [d] = diagnose(
        node(),
        healthy({ filter: filter("ACCEPT", ["-A FORWARD -o vmbr1 -j REJECT"]) }),
      );
      expect(d?.message).toMatch(/the rule "-A FORWARD -o vmbr1 -j REJECT" drops it — /);
    });

    it("policy DROP with the fix applied: nothing", () => {
      const fixed = filter("DROP", ["-I FORWARD -m conntrack --ctstate DNAT -j ACCEPT"]);
      // iptables-save prints -A; the parser takes -A lines only, so write it as saved.
      expect(diagnose(node(), healthy({ filter: fixed })).length).toBe(1);
      const saved = filter("DROP", ["-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT"]);
      expect(diagnose(node(), healthy({ filter: saved }))).toEqual([]);
    });

    it("an outbound NAT rule under policy DROP: the fix accepts the guest's traffic and replies", () => {
      const [d] = diagnose(
        node({ rules: ["OUT ACCEPT -dest 198.51.100.20 -p tcp -dport 443 # NAT"] }),
        healthy({ filter: filter("DROP") }),
      );
      expect(d?.message).toMatch(
        /^outbound NAT firewall\/107\.fw:4 .* — .*iptables -I FORWARD -i vmbr1 -o vmbr0 -j ACCEPT; iptables -I FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT$/,
      );
    });

    describe("a firewall=1 NIC the Proxmox firewall does not filter: the fwbr pass too", () => {
      const off = () => node({ cluster: null });
      const ROUTED = "-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT";
      const BRIDGED = "-A FORWARD -i fwbr+ -o fwbr+ -j ACCEPT";

      it("policy DROP: the routed and the bridged pass, each with its own fix", () => {
        const ds = diagnose(off(), healthy({ filter: filter("DROP") }));
        expect(ds.map((d) => d.message.split(": ").slice(1).join(": "))).toEqual([
          "the filter FORWARD policy is DROP and no rule accepts it — accept forwarded connections in both directions: iptables -I FORWARD -m conntrack --ctstate DNAT -j ACCEPT (and keep it in your firewall configuration)",
          "the filter FORWARD policy is DROP and no rule accepts its bridged pass through fwbr107i0 (net0 firewall=1) — accept what the firewall bridges carry after pve-firewall's own rules: iptables -A FORWARD -i fwbr+ -o fwbr+ -j ACCEPT (and keep it in your firewall configuration)",
        ]);
      });

      it("the routed fix alone leaves the bridged pass; both fixes: nothing", () => {
        const one = diagnose(off(), healthy({ filter: filter("DROP", [ROUTED]) }));
        expect(one.map((d) => d.message)).toEqual([expect.stringMatching(/bridged pass/)]);
        expect(diagnose(off(), healthy({ filter: filter("DROP", [ROUTED, BRIDGED]) }))).toEqual([]);
      });

      it("a rule dropping the bridged pass: the fix goes first, for that bridge alone", () => {
        const f = filter("ACCEPT", ["-A FORWARD -i fwbr107i0 -j DROP"]);
        const [d, ...rest] = diagnose(off(), healthy({ filter: f }));
        expect(rest).toEqual([]);
        expect(d?.message).toMatch(
          /the rule "-A FORWARD -i fwbr107i0 -j DROP" drops its bridged pass through fwbr107i0 \(net0 firewall=1\) — accept what fwbr107i0 bridges: iptables -I FORWARD -i fwbr107i0 -o fwbr107i0 -j ACCEPT/,
        );
      });

      it("an outbound NAT rule: its bridged pass (tap → fwln) is judged too", () => {
        const out = node({
          cluster: null,
          rules: ["OUT ACCEPT -dest 198.51.100.20 -p tcp -dport 443 # NAT"],
        });
        const f = filter("DROP", [
          "-A FORWARD -i vmbr1 -o vmbr0 -j ACCEPT",
          "-A FORWARD -m physdev --physdev-in fwln+ --physdev-is-bridged -j ACCEPT",
        ]);
        const [d, ...rest] = diagnose(out, healthy({ filter: f }));
        expect(rest).toEqual([]);
        expect(d?.message).toMatch(/no rule accepts its bridged pass through fwbr107i0/);
        const fixed = filter("DROP", [
          "-A FORWARD -i vmbr1 -o vmbr0 -j ACCEPT",
          "-A FORWARD -m physdev --physdev-in tap107i0 --physdev-is-bridged -j ACCEPT",
        ]);
        expect(diagnose(out, healthy({ filter: fixed }))).toEqual([]);
      });

      it("LXC: the guest's port is veth<vmid>i<n>", () => {
        const lxc = node({ cluster: null, guest: { kind: "lxc" } });
        const f = filter("DROP", [
          ROUTED,
          "-A FORWARD -m physdev --physdev-out veth107i0 --physdev-is-bridged -j ACCEPT",
        ]);
        expect(diagnose(lxc, healthy({ filter: f }))).toEqual([]);
      });

      it.each<[string, Parameters<typeof node>[0]]>([
        ["the guest firewall filters it (its rules judge the pass)", {}],
        ["a plain NIC has no fwbr", { cluster: null, nic: gwNic({ firewall: false }) }],
      ])("%s: only the routed pass", (_name, opts) => {
        const ds = diagnose(node(opts), healthy({ filter: filter("DROP") }));
        expect(ds.map((d) => d.message)).toEqual([expect.not.stringMatching(/bridged pass/)]);
      });

      it("the nftables firewall (host.fw nftables: 1): no fwbr devices", () => {
        const inp = off();
        inp.host = fw("host", "nodes/pve1/host.fw", { options: { nftables: "1" } });
        const ds = diagnose(inp, healthy({ filter: filter("DROP") }));
        expect(ds.map((d) => d.message)).toEqual([expect.not.stringMatching(/bridged pass/)]);
      });
    });

    it("the filter table unreadable (null): nothing claimed", () => {
      expect(diagnose(node(), healthy({ filter: null }))).toEqual([]);
    });
  });

  describe("guest firewall", () => {
    const sportRule = ["IN ACCEPT -p tcp -sport 822 -dport 22 # NAT compatible form"];

    it("the compatible form's filter rule cannot match: error at the guest's .fw, the rule to add", () => {
      const [d, ...rest] = diagnose(node({ rules: sportRule }));
      expect(rest).toEqual([]);
      expect(d).toMatchObject({ file: "firewall/107.fw", line: 0, severity: "error" });
      expect(d?.message).toMatch(
        /the guest firewall of 107 \(net0 firewall=1, enable: 1\) drops the forwarded traffic after DNAT: policy_in is DROP and no IN rule accepts tcp port 22 to 10.10.10.107 — add "IN ACCEPT -p tcp -dport 22" to \[RULES\] of firewall\/107\.fw$/,
      );
    });

    it("a DROP rule first: names its line, the fix goes before it", () => {
      const [d] = diagnose(
        node({ rules: ["IN DROP -p tcp -dport 22", "IN ACCEPT -p tcp -dport 22 # NAT:822"] }),
      );
      expect(d).toMatchObject({ file: "firewall/107.fw", line: 4 });
      expect(d?.message).toMatch(
        /its rule at firewall\/107\.fw:4 \(DROP\) matches first — add .* before that rule$/,
      );
    });

    it("a security group's REJECT: named at cluster.fw, no line in the guest file", () => {
      const [d] = diagnose(
        node({
          rules: ["GROUP locked", "IN ACCEPT -p tcp -dport 22 # NAT:822"],
          cluster: { options: { enable: "1" }, groups: { locked: ["IN REJECT -p tcp"] } },
        }),
      );
      expect(d).toMatchObject({ file: "firewall/107.fw", line: 0 });
      expect(d?.message).toMatch(/its rule at firewall\/cluster\.fw:5 \(REJECT\) matches first/);
    });

    it("the source-limited forward: the rule to add keeps -source", () => {
      const [d] = diagnose(
        node({ rules: ["IN ACCEPT -source 198.51.100.7 -p tcp -sport 822 -dport 22 # NAT"] }),
      );
      expect(d?.message).toMatch(
        /from 198\.51\.100\.7 — add "IN ACCEPT -source 198\.51\.100\.7 -p tcp -dport 22"/,
      );
    });

    it.each<[string, Parameters<typeof node>[0]]>([
      ["datacenter firewall off (cluster.fw enable: 0)", { cluster: { options: { enable: "0" } } }],
      ["no cluster.fw", { cluster: null }],
      ["guest firewall off (no enable: 1)", { guestOptions: {} }],
      ["NIC without firewall=1", { nic: gwNic({ firewall: false }) }],
      ["policy_in ACCEPT", { guestOptions: { enable: "1", policy_in: "ACCEPT" } }],
    ])("%s: the guest firewall does not filter it, nothing", (_name, opts) => {
      expect(diagnose(node({ rules: sportRule, ...opts }))).toEqual([]);
    });
  });

  describe("guest gateway", () => {
    it("gw= not on the NIC's bridge: error at the guest config, the gw to set", () => {
      const [d, ...rest] = diagnose(node({ nic: gwNic({ gw: "10.10.10.254" }) }));
      expect(rest).toEqual([]);
      expect(d).toMatchObject({ file: "nodes/pve1/qemu-server/107.conf", severity: "error" });
      expect(d?.message).toBe(
        "guest 107 net0: gw=10.10.10.254 is not an address of this node on vmbr1 (10.10.10.1): its replies to forwarded traffic never reach pve-nat's NAT — set gw=10.10.10.1 (qm set 107 --ipconfig0 …,gw=10.10.10.1; the guest takes it at its next start)",
      );
    });

    it("LXC: the fix is pct set --netN", () => {
      const inp = node({ nic: gwNic({ gw: "10.10.10.254" }), guest: { kind: "lxc" } });
      const [d] = diagnose(inp);
      expect(d?.message).toMatch(/— set gw=10\.10\.10\.1 \(pct set 107 --net0 …,gw=10\.10\.10\.1;/);
    });

    it("no gw= configured: nothing claimed", () => {
      expect(diagnose(node({ nic: gwNic({ gw: null }) }))).toEqual([]);
    });
  });

  describe("public address", () => {
    it("absent from the host: error, the address to add with the interface's prefix", () => {
      const facts = healthy({
        addresses: new Map([
          ["vmbr0", ["203.0.113.9/24"]],
          ["vmbr1", ["10.10.10.1/24"]],
        ]),
      });
      const [d, ...rest] = diagnose(node(), facts);
      expect(rest).toEqual([]);
      expect(d).toMatchObject({ file: "iptables:nat", severity: "error" });
      expect(d?.message).toBe(
        "forward firewall/107.fw:4 (tcp 203.0.113.10:822 → 10.10.10.107:22): the public address 203.0.113.10 is not on vmbr0 (in vmbr0's subnet, but no interface of this node holds it: nobody answers ARP for it): nothing arrives for it — add it: ip addr add 203.0.113.10/24 dev vmbr0 (and in /etc/network/interfaces), or use an address of vmbr0 in the rule or public_address",
      );
    });

    it("outside every subnet of the node: only a warning, a provider may route it here", () => {
      const facts = healthy({
        addresses: new Map([
          ["vmbr0", ["192.0.2.10/24"]],
          ["vmbr1", ["10.10.10.1/24"]],
        ]),
      });
      const [d, ...rest] = diagnose(node(), facts);
      expect(rest).toEqual([]);
      expect(d).toMatchObject({ file: "iptables:nat", severity: "warning" });
      expect(d?.message).toMatch(
        /the public address 203\.0\.113\.10 is on no interface of this node: nothing arrives for it unless your provider routes it to this node — add it: ip addr add 203\.0\.113\.10\/<prefix> dev vmbr0/,
      );
    });

    it("the SNAT address of an outbound rule: its replies never arrive", () => {
      const facts = healthy({
        addresses: new Map([
          ["vmbr0", ["203.0.113.9/24"]],
          ["vmbr1", ["10.10.10.1/24"]],
        ]),
      });
      const out = node({
        rules: ["OUT ACCEPT -dest 198.51.100.20 -p tcp -dport 443 # NAT:203.0.113.10"],
      });
      expect(compile(out).forwards[0]?.public.address).toBe("203.0.113.10");
      const [d] = diagnose(out, facts);
      expect(d?.message).toMatch(
        /^outbound NAT firewall\/107\.fw:4 .*the public address 203\.0\.113\.10 is not on vmbr0 .*: replies to it never arrive — /,
      );
    });

    it("on another interface: says where; no subnet of vmbr0 holds it: <prefix>", () => {
      const facts = healthy({
        addresses: new Map([
          ["vmbr0", []],
          ["vmbr1", ["10.10.10.1/24"]],
          ["eno2", ["203.0.113.10/28"]],
        ]),
      });
      const [d] = diagnose(node(), facts);
      expect(d?.message).toMatch(
        /not on vmbr0 \(it is on eno2\): nothing arrives for it — add it: ip addr add 203\.0\.113\.10\/<prefix> dev vmbr0/,
      );
    });
  });

  describe("daemon", () => {
    it("not running: one warning for the node", () => {
      expect(diagnose(node(), healthy({ daemon: { notRunning: true } }))).toEqual([
        {
          file: "pve-nat.service",
          line: 0,
          severity: "warning",
          message:
            "the daemon is not running: no guest start, stop or edit changes the forwards until it runs — systemctl restart pve-nat",
        },
      ]);
    });

    it("not answering: the error it gave", () => {
      const [d] = diagnose(node(), healthy({ daemon: { error: "no answer within 1000 ms" } }));
      expect(d?.message).toMatch(/^the daemon does not answer \(no answer within 1000 ms\): /);
    });

    it("no forward to judge: no daemon warning", () => {
      const inp = node({ rules: ["IN ACCEPT -p tcp -dport 22 # an ordinary rule"] });
      expect(diagnose(inp, healthy({ daemon: { notRunning: true } }))).toEqual([]);
    });
  });

  describe("hookscript", () => {
    it("not set: info, attach", () => {
      const [d, ...rest] = diagnose(node({ hookscript: null }));
      expect(rest).toEqual([]);
      expect(d).toMatchObject({ file: "nodes/pve1/qemu-server/107.conf", severity: "info" });
      expect(d?.message).toMatch(/no hookscript: .* — pve-nat attach 107$/);
    });

    it("a snippet that does not exist: error, the guest would not start", () => {
      const [d] = diagnose(node(), healthy({ existingFiles: new Set() }));
      expect(d).toMatchObject({ severity: "error" });
      expect(d?.message).toMatch(
        /^hookscript local:snippets\/pve-nat-hook: \/var\/lib\/vz\/snippets\/pve-nat-hook does not exist: Proxmox refuses to start guest 107 — /,
      );
    });

    it("a storage without snippets content: error, the pvesm command keeps its content", () => {
      const storages = parseStorageCfg("dir: local\n\tpath /var/lib/vz\n\tcontent iso,backup\n");
      const [d] = diagnose(node(), healthy({ storages }));
      expect(d?.message).toMatch(
        /storage local does not allow snippets content: Proxmox refuses to start guest 107 — pvesm set local --content iso,backup,snippets$/,
      );
    });

    it("a storage that is not defined: error", () => {
      const [d] = diagnose(node({ hookscript: "nas:snippets/pve-nat-hook" }));
      expect(d?.message).toMatch(/storage nas is not defined .* — pve-nat attach --force 107$/);
    });
  });

  it("a stopped guest's forward (inactive) is judged; a conflicting one is not", () => {
    const stopped = node({ nic: gwNic({ gw: "10.10.10.254" }), guest: { state: "stopped" } });
    expect(compile(stopped).forwards.map((f) => f.state)).toEqual(["inactive"]);
    expect(lines(diagnose(stopped))).toEqual(["nodes/pve1/qemu-server/107.conf:0: error"]);

    const clash = node({
      more: {
        108: {
          kind: "qemu",
          nics: [{ ...nic(0, "10.10.10.108/24"), gw: "10.10.10.254" }],
          fw: { rules: ["IN ACCEPT -p tcp -dport 22 # NAT:822"] },
        },
      },
    });
    expect(compile(clash).forwards.map((f) => [f.vmid, f.state])).toEqual([
      [107, "active"],
      [108, "conflict"],
    ]);
    // 108's wrong gateway is not diagnosed: its forward does not exist (check reports the conflict).
    expect(diagnose(clash).filter((d) => d.message.includes("gw="))).toEqual([]);
  });

  it("only <vmid>: that guest's forwards alone", () => {
    const two = node({
      nic: gwNic({ gw: "10.10.10.254" }),
      more: {
        108: {
          kind: "qemu",
          nics: [{ ...nic(0, "10.10.10.108/24"), gw: "10.10.10.253" }],
          fw: { rules: ["IN ACCEPT -p tcp -dport 22 # NAT:823"] },
        },
      },
    });
    const gws = (only: number | null) =>
      diagnose(two, healthy(), only)
        .filter((d) => d.message.includes("gw="))
        .map((d) => d.file);
    expect(gws(null)).toEqual([
      "nodes/pve1/qemu-server/107.conf",
      "nodes/pve1/qemu-server/108.conf",
    ]);
    expect(gws(108)).toEqual(["nodes/pve1/qemu-server/108.conf"]);
    expect(gws(107)).toEqual(["nodes/pve1/qemu-server/107.conf"]);
  });
});
