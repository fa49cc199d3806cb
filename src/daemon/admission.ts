// The I/O half of diagnose/admission.ts, for the daemon (after a restore) and `status`: one
// read of the filter table (runner.ts saveFilter), and only when a forward's guest firewall
// filters.
import { type Admission, admissionTargets, judgeAdmission } from "../diagnose/admission.js";
import { parseFilterSave } from "../diagnose/filter.js";
import { type Backend, saveFilter } from "../iptables/runner.js";
import type { NatPlan, NodeInput, Owner } from "../model.js";

export async function readAdmissions(
  plan: NatPlan,
  input: NodeInput | null,
  backend: Backend,
  owners?: ReadonlySet<Owner>,
): Promise<Map<number, Admission>> {
  if (input === null) return new Map();
  const targets = admissionTargets(plan, input, owners);
  if (targets.length === 0) return new Map();
  return judgeAdmission(targets, parseFilterSave(await saveFilter(backend)));
}
