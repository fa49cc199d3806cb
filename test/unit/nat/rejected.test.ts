// A line pve-firewall rejects is not applied by pve-firewall, so it must not become a forward
// either — even when only the cross-file check (checkRefs) finds the problem.
import { describe, expect, it } from "vitest";
import type { FwFile } from "../../../src/model.js";
import { compile } from "../../../src/nat/compile.js";
import { parseFwFile } from "../../../src/pve/fwfile.js";
import { checkRefs } from "../../../src/pve/refs.js";
import { conf, input, nic } from "../../helpers/build.js";

function guestFw(text: string, cluster: FwFile | null): FwFile {
  const fw = parseFwFile(text, "firewall/107.fw", "guest");
  fw.diagnostics.push(...checkRefs(fw, cluster));
  return fw;
}

function plan(text: string, clusterText = "") {
  const cluster = parseFwFile(clusterText, "firewall/cluster.fw", "cluster");
  const base = input();
  base.cluster = cluster;
  base.guests = {
    107: {
      conf: conf(107, "qemu", [nic(0, "10.10.10.107/24")]),
      fw: guestFw(text, cluster),
      state: "running",
    },
  };
  return compile(base);
}

describe("compile skips lines pve-firewall rejects", () => {
  it.each([
    ["an undefined alias", "[RULES]\nIN ACCEPT -source office -p tcp -dport 22 # NAT:822\n"],
    ["an undefined ipset", "[RULES]\nIN ACCEPT -source +office -p tcp -dport 22 # NAT:822\n"],
    ["a GROUP name written in upper case", "[RULES]\nGROUP Web # NAT\n"],
  ])("%s: an error at the line, no forward, no chain", (_name, text) => {
    const p = plan(text, "[group web]\nIN ACCEPT -p tcp -dport 80 # NAT:8080\n");
    expect(p.diagnostics.some((d) => d.file === "firewall/107.fw" && d.severity === "error")).toBe(
      true,
    );
    expect(p.forwards.filter((f) => f.vmid === 107)).toEqual([]);
    expect(p.chains).toEqual([]);
  });

  it("the same rule with the alias defined becomes a forward", () => {
    const p = plan(
      "[ALIASES]\noffice 198.51.100.7\n[RULES]\nIN ACCEPT -source office -p tcp -dport 22 # NAT:822\n",
    );
    expect(p.forwards.map((f) => [f.source, f.public.ports, f.private.ports, f.state])).toEqual([
      ["office", "822", "22", "active"],
    ]);
  });
});
