// `pve-nat plan [vmid]` (SPEC §6): the forwards and the exact restore payload pve-nat would
// apply, computed from the files alone; reads no iptables state and changes nothing.

import type { Command } from "commander";
import { UsageError } from "../errors.js";
import { renderRestore } from "../iptables/render.js";
import { parseSave } from "../iptables/save.js";
import type { NatPlan, Owner } from "../model.js";
import { compile } from "../nat/compile.js";
import { planToJson } from "../nat/json.js";
import { loadNode } from "../pve/node.js";
import { contextFrom, type GlobalOptions } from "./context.js";
import { diagnosticLine, forwardsTable, sortDiagnostics } from "./format.js";

export function parseVmid(text: string): number {
  if (!/^[1-9]\d{0,8}$/.test(text)) throw new UsageError(`not a VMID: "${text}"`);
  return Number(text);
}

/** The plan narrowed to one guest (its forwards and chains), or the whole plan. */
export function narrow(plan: NatPlan, vmid: number | null): { plan: NatPlan; owners: Owner[] } {
  if (vmid === null) return { plan, owners: plan.chains.map((c) => c.owner) };
  return {
    plan: { ...plan, forwards: plan.forwards.filter((f) => f.vmid === vmid) },
    owners: plan.chains.some((c) => c.owner === vmid) ? [vmid] : [],
  };
}

export function register(program: Command): void {
  program
    .command("plan [vmid]")
    .description("show the forwards and the iptables-restore payload pve-nat would apply")
    .action(async (vmidArg: string | undefined, _opts: unknown, cmd: Command) => {
      const ctx = contextFrom(cmd.optsWithGlobals<GlobalOptions>());
      const vmid = vmidArg === undefined ? null : parseVmid(vmidArg);
      const input = await loadNode({ path: ctx.path, configPath: ctx.configPath, node: ctx.node });
      const full = compile(input);
      const { owners } = narrow(full, vmid);
      // Rendered from the whole plan: the entry chains jump to every active guest.
      const restore = renderRestore({ plan: full, owners, entry: true, live: parseSave("", "") });
      const shown = narrow({ ...full, diagnostics: sortDiagnostics(full.diagnostics) }, vmid).plan;
      if (ctx.json) {
        process.stdout.write(`${JSON.stringify(planToJson(shown, { restore }), null, 2)}\n`);
        return;
      }
      const out = [forwardsTable(shown.forwards)];
      if (shown.diagnostics.length > 0) {
        out.push("\n", ...shown.diagnostics.map((d) => `${diagnosticLine(d)}\n`));
      }
      out.push("\n", restore);
      process.stdout.write(out.join(""));
    });
}
