// The guest agent source (pve/agent.ts) with a STAND-IN `qm` on PATH: no Debian package
// provides qm (it is Proxmox's qemu-server), so a small shell script plays it, printing the
// documented `qm guest cmd <vmid> network-get-interfaces` JSON — or hanging, failing, or lying
// (wrong MAC, garbage, an address outside the NIC's network). The real command runs through
// exec.ts exactly as the daemon runs it.
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AddressFacts } from "../../../src/model.js";
import { learnedAddress } from "../../../src/nat/learn.js";
import { createAgentCache, qmAgentRun } from "../../../src/pve/agent.js";
import { emptyFacts } from "../../../src/pve/learned.js";
import { conf, nic } from "../../helpers/build.js";

const MAC = "bc:24:11:00:00:6b";
let dir = "";
const oldPath = process.env.PATH;

const answer = (mac: string, ip: string) =>
  JSON.stringify([
    {
      name: "lo",
      "hardware-address": "00:00:00:00:00:00",
      "ip-addresses": [{ "ip-address-type": "ipv4", "ip-address": "127.0.0.1", prefix: 8 }],
    },
    {
      name: "eth0",
      "hardware-address": mac,
      "ip-addresses": [
        { "ip-address-type": "ipv6", "ip-address": "fe80::be24:11ff:fe00:6b", prefix: 64 },
        { "ip-address-type": "ipv4", "ip-address": ip, prefix: 24 },
      ],
    },
  ]);

/** The stand-in: behaviour per vmid (the third argument). */
const QM = `#!/bin/sh
[ "$1" = guest ] && [ "$2" = cmd ] && [ "$4" = network-get-interfaces ] || { echo "usage" >&2; exit 2; }
case "$3" in
  101) cat "${"$"}{0%/qm}/ok.json" ;;
  102) sleep 10; cat "${"$"}{0%/qm}/ok.json" ;;
  103) echo "QEMU guest agent is not running" >&2; exit 255 ;;
  104) cat "${"$"}{0%/qm}/wrongmac.json" ;;
  105) echo "{garbage" ;;
  106) cat "${"$"}{0%/qm}/outside.json" ;;
  *) exit 1 ;;
esac
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pvenat-qm-"));
  await writeFile(join(dir, "qm"), QM);
  await chmod(join(dir, "qm"), 0o755);
  await writeFile(join(dir, "ok.json"), answer(MAC.toUpperCase(), "10.10.10.50"));
  await writeFile(join(dir, "wrongmac.json"), answer("bc:24:11:99:99:99", "10.10.10.51"));
  await writeFile(join(dir, "outside.json"), answer(MAC, "198.51.100.66"));
  process.env.PATH = `${dir}:${oldPath}`;
});

afterAll(async () => {
  process.env.PATH = oldPath;
  await rm(dir, { recursive: true, force: true });
});

/** What nat/learn.ts makes of the answers for guest vmid's NIC (on an SDN VNet 10.10.10.0/24). */
function resolved(vmid: number, agent: AddressFacts["agent"]): string | null {
  const c = { ...conf(vmid, "qemu", [nic(0, "dhcp", false, "vnet1", MAC)]), agent: true };
  const facts: AddressFacts = {
    ...emptyFacts(),
    agent,
    sdn: {
      zones: { z: { type: "simple", dhcp: null } },
      vnets: { vnet1: { zone: "z" } },
      subnets: [
        {
          id: "z-10.10.10.0-24",
          zone: "z",
          vnet: "vnet1",
          cidr: "10.10.10.0/24",
          gateway: "10.10.10.1",
          snat: false,
          line: 1,
        },
      ],
    },
  };
  return learnedAddress(c, c.nics[0] as never, facts)?.address ?? null;
}

describe("guest agent via a stand-in qm", () => {
  it("a good agent: its address, matched by MAC; want() never waits", async () => {
    const agent = createAgentCache({ run: qmAgentRun(2000) });
    const t0 = performance.now();
    agent.want([101]);
    expect(performance.now() - t0).toBeLessThan(50);
    expect(agent.answers()).toEqual({});
    await agent.idle(5000);
    expect(agent.answers()).toEqual({ 101: [{ mac: MAC, ips: ["10.10.10.50"] }] });
    expect(resolved(101, agent.answers())).toBe("10.10.10.50");
  });

  it("a slow agent is bounded by the timeout, then retried with backoff", async () => {
    let now = 0;
    let calls = 0;
    const qm = qmAgentRun(300);
    const agent = createAgentCache({
      run: (vmid) => {
        calls++;
        return qm(vmid);
      },
      timeoutMs: 300,
      now: () => now,
    });
    const t0 = performance.now();
    agent.want([102]);
    await agent.idle(5000);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(agent.answers()).toEqual({});
    expect(calls).toBe(1);
    // Backoff: not asked again before the retry delay (1 s, then 2 s, …).
    now += 500;
    agent.want([102]);
    await agent.idle(5000);
    expect(calls).toBe(1);
    now += 600;
    agent.want([102]);
    await agent.idle(5000);
    expect(calls).toBe(2);
    now += 1500;
    agent.want([102]);
    expect(calls).toBe(2);
  });

  it.each([
    [103, "a failing agent"],
    [104, "a lying agent: wrong MAC"],
    [105, "a lying agent: garbage JSON"],
    [106, "a lying agent: an address outside the NIC's network"],
  ])("%s: %s gives no address and no crash", async (vmid) => {
    const agent = createAgentCache({ run: qmAgentRun(2000) });
    agent.want([vmid]);
    await agent.idle(5000);
    expect(resolved(vmid, agent.answers())).toBeNull();
  });

  it("a stopped guest's answer is dropped; at most `parallel` queries at once", async () => {
    let running = 0;
    let peak = 0;
    const agent = createAgentCache({
      parallel: 2,
      run: async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 30));
        running--;
        return {
          code: 0,
          stdout: answer(MAC, "10.10.10.50"),
          stderr: "",
          timedOut: false,
          failure: null,
        };
      },
    });
    agent.want([1, 2, 3, 4, 5]);
    await agent.idle(5000);
    expect(peak).toBe(2);
    expect(Object.keys(agent.answers())).toEqual(["1", "2", "3", "4", "5"]);
    agent.want([3]);
    expect(Object.keys(agent.answers())).toEqual(["3"]);
  });
});
