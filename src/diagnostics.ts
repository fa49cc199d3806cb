// How a diagnostic is printed and ordered (SPEC §3, §6): one place for the CLI and the daemon.
import type { Diagnostic } from "./model.js";

/** `<path>:<line>: <severity>: <message>` (no line for a whole-file problem). */
export function diagnosticLine(d: Diagnostic): string {
  return `${d.file}${d.line > 0 ? `:${d.line}` : ""}: ${d.severity}: ${d.message}`;
}

/** Diagnostics ordered by file, then line (SPEC §6). Stable for equal keys. */
export function sortDiagnostics(ds: readonly Diagnostic[]): Diagnostic[] {
  return [...ds].sort((a, b) => (a.file === b.file ? a.line - b.line : a.file < b.file ? -1 : 1));
}
