// Protected host ports (SPEC §2.3): a forward of public tcp/22 — or of any port the node itself
// listens on at the public address — is an error in status and check, nothing is DNATed there
// and the node's own "sshd" keeps answering; listed in allow_host_ports, the port is forwarded.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../helpers/exec.js";
import { ADDR, baseConfig } from "./harness.js";
import { createScenario, type Scenario, within } from "./scenario.js";

const FW_107 = `[OPTIONS]
enable: 1

[RULES]
IN ACCEPT -p tcp -dport 22 # NAT:22 the guest's ssh on the node's port
IN ACCEPT -p tcp -dport 80 # NAT:9999 a port the node listens on
IN ACCEPT -p tcp -dport 80 # NAT:8081 web
`;
// A node-level rule is held to the same rule.
const HOST_FW = `[OPTIONS]
enable: 1

[RULES]
IN ACCEPT -dest 10.10.10.107 -p tcp -dport 80 # NAT:8006 over the web UI's port
`;

let sc: Scenario;
const connect = async (port: number, timeoutMs = 1500) => {
  const r = await sc.sim.tcpProbe(sc.sim.ns.clientA, ADDR.public, port, { timeoutMs });
  return r.status === "data" ? r.data.trim() : r.status;
};
const states = async () =>
  (await sc.json(["status"])).forwards.map((f) => [f.public.ports, f.state, f.reason]);
const nodeListener = async (bind: string, port: number, banner: string) => {
  sc.sim.spawn(sc.sim.ns.node, [
    "socat",
    `TCP-LISTEN:${port},bind=${bind},fork,reuseaddr`,
    `SYSTEM:echo ${banner} from=$SOCAT_PEERADDR`,
  ]);
  const up = await waitFor(
    async () =>
      (await sc.sim.exec(sc.sim.ns.node, ["ss", "-Hltn", `sport = :${port}`])).stdout.trim() !== "",
    3000,
    20,
  );
  if (!up) throw new Error(`node listener on ${port} did not start`);
};

beforeAll(async () => {
  sc = await createScenario({ guests: [{ vmid: 107, kind: "qemu", plug: false }] });
  await nodeListener(ADDR.public, 22, "SSH-2.0-node");
  await nodeListener("0.0.0.0", 9999, "node-9999");
  await sc.sim.writePve("firewall/107.fw", FW_107);
  await sc.sim.writePve("nodes/pve1/host.fw", HOST_FW);
  await sc.startDaemon();
  await sc.boot(107);
  const g = sc.sim.guests.get(107);
  await sc.sim.tcpService(g?.ns ?? "", 22, "SSH-2.0-vm107");
  await sc.sim.tcpService(g?.ns ?? "", 80, "web-vm107");
});
afterAll(async () => {
  await sc?.destroy();
});

describe("protected ports", () => {
  it("status: public 8006 (host.fw), 22 and 9999 are errors naming allow_host_ports, 8081 is active", async () => {
    const s = await states();
    expect(s.map(([p, st]) => [p, st])).toEqual([
      ["8006", "error"],
      ["22", "error"],
      ["9999", "error"],
      ["8081", "active"],
    ]);
    expect(s[0]?.[2]).toMatch(/served by the host itself \(web UI\).*allow_host_ports/);
    expect(s[1]?.[2]).toMatch(/served by the host itself \(SSH\).*allow_host_ports/);
    expect(s[2]?.[2]).toMatch(/served by the host itself \(listening\).*allow_host_ports/);
  });

  it("check: exit 1 with an error at each of those lines", async () => {
    const r = await sc.cli(["check", "--json"]);
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout) as {
      diagnostics: Array<{ file: string; line: number; severity: string }>;
    };
    expect(
      j.diagnostics
        .filter((d) => d.severity === "error")
        .map((d) => `${d.file}:${d.line}`)
        .sort(),
    ).toEqual(["firewall/107.fw:5", "firewall/107.fw:6", "nodes/pve1/host.fw:5"]);
  });

  it.each([
    ["22: the node's own sshd answers", 22, `SSH-2.0-node from=${ADDR.clientA}`],
    ["9999: the node's own listener answers", 9999, `node-9999 from=${ADDR.clientA}`],
    ["8081: forwarded to the guest", 8081, `web-vm107 from=${ADDR.clientA}`],
  ] as const)("%s", async (_name, port, expected) => {
    expect(await connect(port)).toBe(expected);
  });

  it("nothing live matches those ports", async () => {
    const lines = Object.values((await sc.liveOwned()).chains).flat();
    expect(lines.filter((l) => /--dport (22|8006|9999)\b/.test(l))).toEqual([]);
  });

  it("allow_host_ports = 22 (live edit): public 22 goes to the guest within 2 s, 9999 stays the node's", async () => {
    await sc.sim.writeConfig(baseConfig("allow_host_ports = 22\n"));
    const ms = await within(async () => (await connect(22, 500)).startsWith("SSH-2.0-vm107"), 6000);
    expect(ms).not.toBeNull();
    expect(ms).toBeLessThanOrEqual(3000);
    expect(await connect(22)).toBe(`SSH-2.0-vm107 from=${ADDR.clientA}`);
    expect(await connect(9999)).toBe(`node-9999 from=${ADDR.clientA}`);
    expect((await states()).map(([p, st]) => [p, st])).toEqual([
      ["8006", "error"],
      ["22", "active"],
      ["9999", "error"],
      ["8081", "active"],
    ]);
  });
});
