import { describe, expect, it } from "vitest";
import { compile } from "../../../src/nat/compile.js";
import { planToJson } from "../../../src/nat/json.js";
import { input, nic } from "../../helpers/build.js";

const plan = () =>
  compile(
    input({
      cluster: { rules: ["OUT ACCEPT -source 10.10.10.0/24 # NAT"] },
      guests: {
        107: {
          nics: [nic(0, "10.10.10.107/24")],
          fw: {
            rules: [
              "IN ACCEPT -source 198.51.100.7 -dest 10.10.10.107 -p tcp -sport 822 -dport 22 # NAT ssh",
              "IN ACCEPT -p tcp -dport 22 # NAT:822",
            ],
          },
        },
      },
    }),
  );

describe("planToJson", () => {
  it("SPEC §6 shape, stable key order (golden)", () => {
    const json = planToJson(plan(), { restore: "*nat\nCOMMIT\n" });
    expect(JSON.stringify(json, null, 2)).toBe(`{
  "version": 1,
  "node": "pve1",
  "forwards": [
    {
      "vmid": null,
      "direction": "out",
      "proto": null,
      "public": {
        "address": null,
        "ports": null
      },
      "private": {
        "address": "10.10.10.0/24",
        "ports": null,
        "address_source": "rule"
      },
      "source": "10.10.10.0/24",
      "destination": null,
      "origin": "firewall/cluster.fw:4",
      "state": "active",
      "reason": null
    },
    {
      "vmid": 107,
      "direction": "in",
      "proto": "tcp",
      "public": {
        "address": "203.0.113.10",
        "ports": "822"
      },
      "private": {
        "address": "10.10.10.107",
        "ports": "22",
        "address_source": "rule"
      },
      "source": "198.51.100.7",
      "destination": "10.10.10.107",
      "origin": "firewall/107.fw:4",
      "state": "active",
      "reason": null
    },
    {
      "vmid": 107,
      "direction": "in",
      "proto": "tcp",
      "public": {
        "address": "203.0.113.10",
        "ports": "822"
      },
      "private": {
        "address": "10.10.10.107",
        "ports": "22",
        "address_source": "config"
      },
      "source": null,
      "destination": null,
      "origin": "firewall/107.fw:5",
      "state": "conflict",
      "reason": "public tcp 203.0.113.10:822 is already forwarded by firewall/107.fw:4 (vm 107)"
    }
  ],
  "diagnostics": [
    {
      "file": "firewall/107.fw",
      "line": 5,
      "severity": "error",
      "message": "NAT conflict, not applied: public tcp 203.0.113.10:822 is already forwarded by firewall/107.fw:4 (vm 107)"
    }
  ],
  "restore": "*nat\\nCOMMIT\\n"
}`);
  });

  it("status extras: counters per forward, daemon object; no restore", () => {
    const json = planToJson(plan(), {
      counters: [{ packets: 3, bytes: 180 }, null],
      daemon: { running: true },
    });
    expect(Object.keys(json)).toEqual(["version", "node", "forwards", "diagnostics", "daemon"]);
    const fw = json.forwards as Array<Record<string, unknown>>;
    expect(fw.map((f) => f.counters)).toEqual([{ packets: 3, bytes: 180 }, null, null]);
    expect(Object.keys(fw[0] ?? {})).toEqual([
      "vmid",
      "direction",
      "proto",
      "public",
      "private",
      "source",
      "destination",
      "origin",
      "state",
      "reason",
      "counters",
    ]);
    expect(json.daemon).toEqual({ running: true });
  });

  it("plan without extras has no restore/daemon keys", () => {
    expect(Object.keys(planToJson(plan()))).toEqual(["version", "node", "forwards", "diagnostics"]);
  });
});
