// Fixture node tree → parsers → compile → render, compared whole with the golden files in
// test/fixtures/nodes/pve1/expected/. Run states and host ports are fixed here (they are I/O);
// everything else comes from the files. UPDATE_GOLDEN=1 rewrites the golden files (review the
// diff before committing).

import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config/conf.js";
import { diffLive, renderRestore } from "../../../src/iptables/render.js";
import { emptyLive } from "../../../src/iptables/save.js";
import type { GuestKind, NodeInput, RunState } from "../../../src/model.js";
import { compile } from "../../../src/nat/compile.js";
import { planToJson } from "../../../src/nat/json.js";
import { parseFwFile } from "../../../src/pve/fwfile.js";
import { parseGuestConf } from "../../../src/pve/guestconf.js";
import { emptyFacts } from "../../../src/pve/learned.js";
import { checkRefs } from "../../../src/pve/refs.js";
import { danglingTargets, offWhitelist } from "../../helpers/payload.js";

const ROOT = path.resolve(import.meta.dirname, "../../fixtures/nodes/pve1");
const read = (rel: string) => readFileSync(path.join(ROOT, rel), "utf8");

const GUESTS: Array<{ vmid: number; kind: GuestKind; state: RunState }> = [
  { vmid: 107, kind: "lxc", state: "running" },
  { vmid: 108, kind: "qemu", state: "running" },
  { vmid: 110, kind: "lxc", state: "stopped" },
  { vmid: 111, kind: "lxc", state: "starting" },
];

function load(): NodeInput {
  const { config, errors } = parseConfig(
    read("etc/pve-nat/pve-nat.conf"),
    "/etc/pve-nat/pve-nat.conf",
  );
  expect(errors).toEqual([]);
  const cluster = parseFwFile(
    read("etc/pve/firewall/cluster.fw"),
    "firewall/cluster.fw",
    "cluster",
  );
  cluster.diagnostics.push(...checkRefs(cluster, cluster));
  const host = parseFwFile(read("etc/pve/nodes/pve1/host.fw"), "nodes/pve1/host.fw", "host");
  const guests: NodeInput["guests"] = {};
  for (const g of GUESTS) {
    const dir = g.kind === "qemu" ? "qemu-server" : "lxc";
    const confFile = `nodes/pve1/${dir}/${g.vmid}.conf`;
    const fwFile = `firewall/${g.vmid}.fw`;
    const fw = parseFwFile(read(`etc/pve/${fwFile}`), fwFile, "guest");
    fw.diagnostics.push(...checkRefs(fw, cluster));
    guests[g.vmid] = {
      conf: parseGuestConf(read(`etc/pve/${confFile}`), g.vmid, g.kind, confFile),
      fw,
      state: g.state,
    };
  }
  return {
    node: config.node ?? "pve1",
    config,
    publicAddress: config.publicAddress,
    hostPorts: { any: [22], at: {} },
    cluster,
    host,
    guests,
    addresses: emptyFacts(),
    diagnostics: [],
  };
}

function golden(name: string, actual: string): void {
  const file = path.join(ROOT, "expected", name);
  if (process.env.UPDATE_GOLDEN === "1") writeFileSync(file, actual);
  expect(actual).toBe(readFileSync(file, "utf8"));
}

describe("fixture node pve1 (golden)", () => {
  it("restore payload and plan JSON match the golden files", () => {
    const plan = compile(load());
    const restore = renderRestore({
      plan,
      owners: plan.chains.map((c) => c.owner),
      entry: true,
      live: emptyLive(),
    });
    expect(danglingTargets(restore)).toEqual([]);
    expect(offWhitelist(restore)).toEqual([]);
    golden("restore.txt", restore);
    golden("plan.json", `${JSON.stringify(planToJson(plan, { restore }), null, 2)}\n`);
    // Not a byte of any comment text from the files reaches the payload.
    for (const word of ["ssh in", "quoted", "reboot", "`id`", "masquerade everything", "web"]) {
      expect(restore).not.toContain(word);
    }
    expect(diffLive(plan, emptyLive()).entry).toBe(true);
  });
});
