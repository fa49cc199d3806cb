// The `iptables-save -t filter` text of a node whose FORWARD chain has `policy`, for the
// diagnosis tests (diagnose/filter.ts parses it).
export function filterSave(policy: string, rules: string[] = [], chains: string[] = []): string {
  return [
    "*filter",
    ":INPUT ACCEPT [0:0]",
    `:FORWARD ${policy} [0:0]`,
    ":OUTPUT ACCEPT [0:0]",
    ...chains.map((c) => `:${c} - [0:0]`),
    ...rules,
    "COMMIT",
    "",
  ].join("\n");
}
