// pve-nat's firewall grammar against pve-firewall's own verdicts (SPEC §3: "check judges every
// line the way pve-firewall does"). The verdicts were recorded by running pve-firewall's parser
// on these fixtures (test/fixtures/grammar/README.md); here we only compare line sets.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { Diagnostic, FwFile, FwKind } from "../../../src/model.js";
import { parseFwFile } from "../../../src/pve/fwfile.js";
import { checkRefs } from "../../../src/pve/refs.js";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "../../fixtures");
const CLUSTER = "firewall/cluster.fw";

interface Verdict {
  oracle: string;
  files: Record<string, { kind: FwKind; errors: Array<{ line: number; message: string }> }>;
}

interface Judged {
  /** Fixture path relative to test/fixtures, e.g. "grammar/ports/firewall/cluster.fw". */
  id: string;
  caseDir: string;
  file: string;
  kind: FwKind;
  expected: Array<{ line: number; message: string }>;
}

function findVerdicts(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...findVerdicts(path));
    else if (name === "verdict.json") out.push(path);
  }
  return out;
}

function loadCases(root: string): Judged[] {
  const judged: Judged[] = [];
  for (const verdictPath of findVerdicts(join(FIXTURES, root))) {
    const caseDir = dirname(verdictPath);
    const verdict = JSON.parse(readFileSync(verdictPath, "utf8")) as Verdict;
    for (const [file, v] of Object.entries(verdict.files).sort(([a], [b]) => a.localeCompare(b))) {
      judged.push({
        id: relative(FIXTURES, join(caseDir, file)),
        caseDir,
        file,
        kind: v.kind,
        expected: v.errors,
      });
    }
  }
  return judged;
}

// Bytes, not text: some fixtures are byte-exact on purpose (BOM, CRLF, Latin-1, broken UTF-8).
const read = (caseDir: string, file: string) => new Uint8Array(readFileSync(join(caseDir, file)));

/** Every error pve-nat reports for one file, as pve-firewall sees it: guest and host files with
 *  the case's cluster.fw loaded; cluster.fw resolves its own names, as pve-firewall's
 *  load_clusterfw_conf does (the cluster config under construction is its own "cluster"). */
function pveNatErrors(c: Judged): Diagnostic[] {
  const clusterFw = existsSync(join(c.caseDir, CLUSTER))
    ? parseFwFile(read(c.caseDir, CLUSTER), CLUSTER, "cluster")
    : null;
  const fw: FwFile =
    c.file === CLUSTER && clusterFw
      ? clusterFw
      : parseFwFile(read(c.caseDir, c.file), c.file, c.kind);
  const refs = checkRefs(fw, c.kind === "cluster" ? fw : clusterFw);
  return [...fw.diagnostics, ...refs].filter((d) => d.severity === "error");
}

const lineSet = (lines: number[]) => [...new Set(lines)].sort((a, b) => a - b);

function explain(c: Judged, got: Diagnostic[]): string {
  const want = lineSet(c.expected.map((e) => e.line));
  const have = lineSet(got.map((d) => d.line));
  const missed = want.filter((l) => !have.includes(l));
  const extra = have.filter((l) => !want.includes(l));
  const text = new TextDecoder().decode(read(c.caseDir, c.file)).split("\n");
  const show = (l: number) => JSON.stringify(text[l - 1] ?? "");
  return [
    `${c.id}: error lines differ from pve-firewall's`,
    ...missed.map(
      (l) =>
        `  pve-firewall rejects line ${l} ${show(l)}: ${c.expected
          .filter((e) => e.line === l)
          .map((e) => e.message)
          .join(" | ")}`,
    ),
    ...extra.map(
      (l) =>
        `  pve-firewall accepts line ${l} ${show(l)}, pve-nat says: ${got
          .filter((d) => d.line === l)
          .map((d) => d.message)
          .join(" | ")}`,
    ),
  ].join("\n");
}

const grammar = loadCases("grammar");
const real = loadCases("real");

describe("fixtures", () => {
  it("hold the recorded verdicts", () => {
    const all = [...grammar, ...real];
    expect(new Set(grammar.map((c) => c.caseDir)).size).toBeGreaterThanOrEqual(30);
    expect(real.length).toBeGreaterThanOrEqual(30);
    for (const c of all) {
      expect(existsSync(join(c.caseDir, c.file)), c.id).toBe(true);
      expect(["cluster", "host", "guest"], c.id).toContain(c.kind);
    }
    // A verdict with no rejections at all would make the comparison one-sided.
    expect(grammar.filter((c) => c.expected.length > 0).length).toBeGreaterThanOrEqual(25);
  });
});

describe.each([
  ["grammar cases", grammar],
  ["real configs", real],
])("%s: pve-nat rejects exactly the lines pve-firewall rejects", (_name, cases) => {
  it.each(cases.map((c) => [c.id, c] as const))("%s", (_id, c) => {
    const got = pveNatErrors(c);
    const actual = { file: c.id, errorLines: lineSet(got.map((d) => d.line)) };
    const expected = { file: c.id, errorLines: lineSet(c.expected.map((e) => e.line)) };
    expect(actual, explain(c, got)).toEqual(expected);
    for (const d of got) expect(d.file, `${c.id}:${d.line}`).toBe(c.file);
  });
});

describe("real configs accepted by pve-firewall", () => {
  const accepted = real.filter((c) => c.expected.length === 0);
  it("are most of the real files", () => {
    expect(accepted.length).toBeGreaterThanOrEqual(25);
  });
  it.each(accepted.map((c) => [c.id, c] as const))("%s: no error", (_id, c) => {
    expect(pveNatErrors(c).map((d) => `${d.file}:${d.line}: ${d.message}`)).toEqual([]);
  });
});
