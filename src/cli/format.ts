// Human output shared by the CLI commands: aligned tables and `path:line: severity: message`.
import type { Forward } from "../model.js";

export { diagnosticLine, sortDiagnostics } from "../diagnostics.js";

/** Columns padded to their widest cell, two spaces apart, no trailing blanks. */
export function table(headers: string[], rows: string[][]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all
    .map((r) =>
      headers
        .map((_, i) => (r[i] ?? "").padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n")
    .concat("\n");
}

export const FORWARD_HEADERS = [
  "VMID",
  "NAME",
  "DIR",
  "PROTO",
  "PUBLIC",
  "PRIVATE",
  "ADDR-FROM",
  "SOURCE",
  "STATE",
  "ORIGIN",
];

function hostPort(address: string | null, ports: string | null, anyAddress: string): string {
  const a = address ?? anyAddress;
  return ports ? `${a}:${ports}` : a;
}

/** One table row per forward. OUT rows show the SNAT address (or "masquerade") as PUBLIC,
 *  the guest as PRIVATE, and in SOURCE "[<source>] to <dest>[:ports]". */
export function forwardRow(f: Forward): string[] {
  const common = [
    f.vmid === null ? "-" : String(f.vmid),
    f.name ?? "-",
    f.direction,
    f.proto ?? "all",
  ];
  const tail = [f.state, f.origin];
  if (f.direction === "in") {
    return [
      ...common,
      hostPort(f.public.address, f.public.ports, "?"),
      hostPort(f.private.address, f.private.ports, "?"),
      f.private.addressSource ?? "-",
      f.source ?? "any",
      ...tail,
    ];
  }
  return [
    ...common,
    f.public.address ?? "masquerade",
    f.private.address ?? "?",
    f.private.addressSource ?? "-",
    `${f.source ? `${f.source} ` : ""}to ${hostPort(f.destination, f.private.ports, "any")}`,
    ...tail,
  ];
}

export function forwardsTable(forwards: readonly Forward[]): string {
  return table(FORWARD_HEADERS, forwards.map(forwardRow));
}
