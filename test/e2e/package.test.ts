// The single executable and the .deb (issue 4). Runs as root. Builds with `npm run package`
// when dist/ lacks the artifacts or any of them is older than a file they are built from (that
// takes a minute or two; a stale binary would test old code). Every dpkg call runs under
// `ip netns exec` of a namespace made here (SPEC §7), so the maintainer scripts' iptables
// work only ever touches that namespace.
import { randomBytes } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Background, run, runOk, spawnBackground, waitFor } from "../helpers/exec.js";

const REPO = path.resolve(import.meta.dirname, "../..");
const DIST = path.join(REPO, "dist");
const EXE = path.join(DIST, "pve-nat");
const SEA_BUNDLE = path.join(DIST, "package/pve-nat.cjs");
const FIXTURE = path.join(REPO, "test/fixtures/nodes/pve1");
/** The snippet's template as the package ships it (the artifacts may predate hooks/ edits). */
const TEMPLATE = "/usr/libexec/pve-nat/pve-nat-hook";
const { version } = JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8")) as {
  version: string;
};

/** What a running node has: pve-nat's chains with a forward, and someone else's NAT rule. */
const SEED = [
  "*nat",
  ":PVENAT-PREROUTING - [0:0]",
  ":PVENAT-107-DNAT - [0:0]",
  ":OTHER-NAT - [0:0]",
  "-I PREROUTING 1 -j PVENAT-PREROUTING",
  "-A PREROUTING -j OTHER-NAT",
  "-A PVENAT-PREROUTING -j PVENAT-107-DNAT",
  "-A PVENAT-107-DNAT -d 203.0.113.10/32 -p tcp -m tcp --dport 822 -j DNAT --to-destination 10.10.10.107:22",
  "-A OTHER-NAT -d 203.0.113.10/32 -p tcp -m tcp --dport 9999 -j DNAT --to-destination 10.10.10.5:22",
  "COMMIT",
  "",
].join("\n");

/** A PATH with no node in it: an empty directory. */
let bare: string;
let deb: string;

function findDeb(): string | undefined {
  const name = readdirSync(DIST).find((f) => /^pve-nat_.*_amd64\.deb$/.test(f));
  return name && path.join(DIST, name);
}

/** What `npm run package` builds from (documentation aside). */
const BUILD_INPUTS = [
  "src",
  "packaging",
  "hooks",
  "scripts/bundle.mjs",
  "package.json",
  "package-lock.json",
];

/** Newest modification time (ms) among the files under `entries` (relative to the repo). */
function newestMtime(entries: readonly string[]): number {
  let newest = 0;
  const visit = (file: string) => {
    const st = statSync(file, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) {
      for (const name of readdirSync(file)) visit(path.join(file, name));
    } else if (!file.endsWith(".md")) {
      newest = Math.max(newest, st.mtimeMs);
    }
  };
  for (const entry of entries) visit(path.join(REPO, entry));
  return newest;
}

/** Why dist/ must be rebuilt, or null when its artifacts are newer than every input. */
function staleReason(): string | null {
  const deb = findDeb();
  if (!existsSync(EXE) || !existsSync(SEA_BUNDLE) || !deb) return "artifacts missing";
  const built = Math.min(...[EXE, SEA_BUNDLE, deb].map((f) => statSync(f).mtimeMs));
  return newestMtime(BUILD_INPUTS) > built ? "sources newer than the artifacts" : null;
}

beforeAll(async () => {
  mkdirSync(DIST, { recursive: true });
  const stale = staleReason();
  if (stale) {
    console.log(`building dist/ with npm run package: ${stale}`);
    await runOk([process.execPath, "packaging/build.mjs"], { cwd: REPO, timeoutMs: 900_000 });
  }
  deb = findDeb() ?? "";
  bare = mkdtempSync(path.join(os.tmpdir(), "pvenat-bare-"));
  mkdirSync(path.join(bare, "bin"));
  // Nothing near the binary either: its own copy in an empty directory.
  copyFileSync(EXE, path.join(bare, "pve-nat"));
}, 900_000);

afterAll(() => {
  if (bare) rmSync(bare, { recursive: true, force: true });
});

/** Environment of a host without Node.js: PATH is an empty directory, HOME elsewhere. */
function bareEnv(addonDir: string): NodeJS.ProcessEnv {
  return { PATH: path.join(bare, "bin"), HOME: bare, PVE_NAT_ADDON_DIR: addonDir };
}

interface SelfTest {
  zeromq: string;
  addon: { kind: string; file: string; written: boolean };
  pagedropBytes: number | null;
  statMany: boolean | null;
  spawn: boolean | null;
}

describe("dist/pve-nat, the single executable", () => {
  it("runs with no node on PATH and no node_modules around it", async () => {
    const env = bareEnv(path.join(bare, "addon-version"));
    expect((await run(["/bin/sh", "-c", "command -v node"], { env })).code).not.toBe(0);
    const r = await run([path.join(bare, "pve-nat"), "--version"], { cwd: bare, env });
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
      code: 0,
      stdout: `${version}\n`,
      stderr: "",
    });
    const help = await run([path.join(bare, "pve-nat"), "--help"], { cwd: bare, env });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: pve-nat");
  });

  it("loads its embedded zeromq addon and carries a message over ipc", async () => {
    const addonDir = path.join(bare, "addon-selftest");
    const out = await runOk([path.join(bare, "pve-nat"), "self-test"], {
      cwd: bare,
      env: bareEnv(addonDir),
    });
    const result = JSON.parse(out) as SelfTest;
    expect(result.addon).toEqual({
      kind: "embedded",
      file: expect.stringMatching(new RegExp(`^${addonDir}/[0-9a-f]{64}\\.node$`)),
      written: true,
    });
    expect(statSync(addonDir).mode & 0o777).toBe(0o700);
    expect(statSync(result.addon.file).mode & 0o777).toBe(0o600);
    // Its own addon (issue 10: page trimming, batch stat, posix_spawn) sits beside zeromq's and
    // works.
    expect(result.pagedropBytes).toBeGreaterThan(1024 * 1024);
    expect(result.statMany).toBe(true);
    expect(result.spawn).toBe(true);
    expect(readdirSync(addonDir).filter((n) => /^[0-9a-f]{64}\.node$/.test(n))).toHaveLength(2);
  });

  it("50 processes starting at once on a fresh host all load the addon", async () => {
    const addonDir = path.join(bare, "addon-race");
    const env = bareEnv(addonDir);
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        run([path.join(bare, "pve-nat"), "self-test"], { cwd: bare, env, timeoutMs: 120_000 }),
      ),
    );
    const failed = results.filter((r) => r.code !== 0);
    expect(failed.map((r) => r.stderr)).toEqual([]);
    const parsed = results.map((r) => JSON.parse(r.stdout) as SelfTest);
    expect(new Set(parsed.map((p) => p.addon.file)).size).toBe(1);
    expect(parsed.filter((p) => p.addon.written)).toHaveLength(1);
    // No temp file of the race is left behind: zeromq's addon and pve-nat's own, nothing else.
    const left = readdirSync(addonDir);
    expect(left).toHaveLength(2);
    expect(left).toContain(path.basename(parsed[0]?.addon.file ?? ""));
    expect(left.every((n) => /^[0-9a-f]{64}\.node$/.test(n))).toBe(true);
    expect(
      parsed.every((p) => (p.pagedropBytes ?? 0) > 0 && p.statMany === true && p.spawn === true),
    ).toBe(true);
  }, 180_000);
});

describe("lintian", () => {
  it("reports no error", async () => {
    const r = await run(["lintian", "--pedantic", "--display-experimental", deb], {
      timeoutMs: 600_000,
    });
    const errors = r.stdout.split("\n").filter((l) => l.startsWith("E:"));
    expect(errors).toEqual([]);
    // lintian exits 0 without errors (warnings need --fail-on warning).
    expect(r.code).toBe(0);
  }, 600_000);
});

describe("the .deb: install, use, purge (in a test namespace)", () => {
  const ns = `pvenat-pkg-${randomBytes(4).toString("hex")}`;
  const inNs = (argv: string[]) => ["ip", "netns", "exec", ns, ...argv];
  let daemon: Background | undefined;
  let files: string[] = [];
  // postinst creates /var/lib/vz/snippets on a host without it; purge must take it away again.
  const hadVz = existsSync("/var/lib/vz");

  /** dpkg's view of the package; a purged package is unknown to dpkg-query. */
  const status = async () =>
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format syntax
    (await run(["dpkg-query", "-W", "-f=${db:Status-Status}", "pve-nat"])).stdout.trim() ||
    "not-installed";

  beforeAll(async () => {
    const before = await status();
    if (before !== "not-installed") {
      throw new Error(`pve-nat is already on this machine (${before}): purge it first`);
    }
    await runOk(["ip", "netns", "add", ns]);
    await runOk(inNs(["ip", "link", "set", "lo", "up"]));
  });

  afterAll(async () => {
    try {
      await daemon?.kill9();
      if ((await status()) !== "not-installed") {
        await run(inNs(["dpkg", "--purge", "pve-nat"]), { timeoutMs: 120_000 });
      }
    } finally {
      await run(["ip", "netns", "delete", ns]);
    }
  }, 180_000);

  it("installs with dpkg -i", async () => {
    const r = await run(inNs(["dpkg", "-i", deb]), { timeoutMs: 180_000 });
    // deb-systemd-helper's "Created symlink …" is the only thing allowed on stderr.
    const noise = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("Created symlink "));
    expect({ code: r.code, noise }).toEqual({ code: 0, noise: [] });
    expect(await status()).toBe("installed");
    files = (await runOk(["dpkg", "-L", "pve-nat"])).trim().split("\n");
    expect(files).toEqual(
      expect.arrayContaining([
        "/usr/bin/pve-nat",
        "/etc/pve-nat/pve-nat.conf",
        "/usr/lib/systemd/system/pve-nat.service",
        "/usr/lib/systemd/system/pve-firewall.service.d/pve-nat.conf",
        "/usr/share/man/man1/pve-nat.1.gz",
        "/usr/share/doc/pve-nat/copyright",
        "/usr/share/doc/pve-nat/changelog.Debian.gz",
        TEMPLATE,
      ]),
    );
    // Placed by postinst, not owned by dpkg.
    const snippet = "/var/lib/vz/snippets/pve-nat-hook";
    expect(files).not.toContain(snippet);
    expect(readFileSync(snippet, "utf8")).toBe(readFileSync(TEMPLATE, "utf8"));
    expect(readFileSync(snippet, "utf8")).toMatch(/^#!\/bin\/sh\n/);
    expect(statSync(snippet).mode & 0o777).toBe(0o755);
  }, 180_000);

  it("/usr/bin/pve-nat runs: --version, self-test with the system addon dir", async () => {
    const bareRun = (...args: string[]) =>
      inNs(["/usr/bin/env", "-i", `PATH=${path.join(bare, "bin")}`, "/usr/bin/pve-nat", ...args]);
    expect(await runOk(bareRun("--version"), { cwd: bare })).toBe(`${version}\n`);
    const result = JSON.parse(await runOk(bareRun("self-test"), { cwd: bare })) as SelfTest;
    expect(result.addon.file).toMatch(/^\/var\/lib\/pve-nat\/addon\/[0-9a-f]{64}\.node$/);
  });

  it("check --root <fixture> behaves exactly as the bundle it was built from", async () => {
    const installed = await run(inNs(["/usr/bin/pve-nat", "check", "--root", FIXTURE]));
    // In the same namespace: check judges the live node there (issue 11), so both must see it.
    const bundle = await run(inNs([process.execPath, SEA_BUNDLE, "check", "--root", FIXTURE]));
    expect(installed.code === 0 || installed.code === 1).toBe(true);
    expect(installed).toEqual(bundle);
  });

  it("an upgrade keeps the forwards and refreshes the snippet", async () => {
    await runOk(inNs(["iptables-restore", "--noflush"]), { input: SEED });
    const before = await runOk(inNs(["iptables-save", "-t", "nat"]));
    // The same package as a newer version: unpack, bump, repack (uncompressed: fast).
    const tree = mkdtempSync(path.join(os.tmpdir(), "pvenat-upgrade-"));
    try {
      await runOk(["dpkg-deb", "-R", deb, path.join(tree, "root")]);
      const control = path.join(tree, "root/DEBIAN/control");
      writeFileSync(
        control,
        readFileSync(control, "utf8").replace(/^Version: .*$/m, "Version: 99.0.0-1"),
      );
      writeFileSync("/var/lib/vz/snippets/pve-nat-hook", "#!/bin/sh\n# stale\n");
      const newer = path.join(tree, "pve-nat_99.0.0-1_amd64.deb");
      await runOk([
        "dpkg-deb",
        "--root-owner-group",
        "-Znone",
        "-b",
        path.join(tree, "root"),
        newer,
      ]);
      const r = await run(inNs(["dpkg", "-i", newer]), { timeoutMs: 180_000 });
      expect(r.code, r.stderr).toBe(0);
    } finally {
      rmSync(tree, { recursive: true, force: true });
    }
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format syntax
    expect(await runOk(["dpkg-query", "-W", "-f=${Version}", "pve-nat"])).toBe("99.0.0-1");
    const pvenat = (save: string) => save.split("\n").filter((l) => l.includes("PVENAT-"));
    expect(pvenat(await runOk(inNs(["iptables-save", "-t", "nat"])))).toEqual(pvenat(before));
    expect(pvenat(before)).toHaveLength(5);
    expect(readFileSync("/var/lib/vz/snippets/pve-nat-hook", "utf8")).toBe(
      readFileSync(TEMPLATE, "utf8"),
    );
  }, 240_000);

  it("the installed daemon serves its bus in /run/pve-nat", async () => {
    daemon = spawnBackground(inNs(["/usr/bin/pve-nat", "daemon"]));
    const up = await waitFor(async () => existsSync("/run/pve-nat/bus.sock"), 10_000);
    expect(up, daemon.output()).toBe(true);
    expect(statSync("/run/pve-nat").mode & 0o777).toBe(0o700);
  }, 30_000);

  // Issue 4: the end-to-end scenarios against the installed binary, not the TypeScript
  // sources. A representative part (guest lifecycle with real traffic, and the robustness
  // cases: daemon down, kill -9 mid-burst, malformed input) in a child vitest run; its
  // scenarios build their own namespaces, so nothing here touches this test's namespace.
  it("the lifecycle and robustness e2e suites pass against /usr/bin/pve-nat", async () => {
    const suites = ["test/e2e/lifecycle.test.ts", "test/e2e/robustness.test.ts"];
    const r = await run(
      [process.execPath, path.join(REPO, "node_modules/vitest/vitest.mjs"), "run", ...suites],
      { cwd: REPO, env: { ...process.env, PVE_NAT_BIN: "/usr/bin/pve-nat" }, timeoutMs: 400_000 },
    );
    const tail = `${r.stdout}\n${r.stderr}`.slice(-3000);
    expect(r.code, tail).toBe(0);
    // Guard against a child run that executed nothing: vitest prints "Tests  N passed".
    // biome-ignore lint/suspicious/noControlCharactersInRegex: strips vitest's colours
    const plain = r.stdout.replace(/\x1b\[[0-9;]*m/g, "");
    const passed = /Tests\s+(\d+) passed/.exec(plain);
    expect(Number(passed?.[1] ?? 0), tail).toBeGreaterThanOrEqual(10);
  }, 420_000);

  it("purge flushes pve-nat's chains only and leaves no file, chain or socket", async () => {
    // A daemon that died (its sockets stay behind) and live chains: only prerm's
    // `pve-nat flush` can take them away now.
    await daemon?.kill9();
    expect(existsSync("/run/pve-nat/bus.sock")).toBe(true);
    await runOk(inNs(["iptables-restore", "--noflush"]), { input: SEED });
    expect(await runOk(inNs(["iptables-save", "-t", "nat"]))).toContain(":PVENAT-107-DNAT");

    const r = await run(inNs(["dpkg", "--purge", "pve-nat"]), { timeoutMs: 180_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain("flush failed");
    expect(await status()).toBe("not-installed");

    const nat = await runOk(inNs(["iptables-save", "-t", "nat"]));
    const raw = await runOk(inNs(["iptables-save", "-t", "raw"]));
    expect(`${nat}\n${raw}`.split("\n").filter((l) => l.includes("PVENAT-"))).toEqual([]);
    expect(nat).toContain("-A OTHER-NAT -d 203.0.113.10/32 -p tcp -m tcp --dport 9999");

    const left = [
      ...files.filter((f) => existsSync(f) && !statSync(f).isDirectory()),
      ...[
        "/etc/pve-nat",
        "/var/lib/pve-nat",
        "/run/pve-nat",
        "/var/lib/prometheus/node-exporter/pve-nat.prom",
        "/var/lib/vz/snippets/pve-nat-hook",
        "/etc/systemd/system/multi-user.target.wants/pve-nat.service",
        "/etc/systemd/system/pve-nat.service",
        "/var/lib/systemd/deb-systemd-helper-enabled/pve-nat.service.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/pve-nat.service",
        "/var/lib/systemd/deb-systemd-helper-masked/pve-nat.service",
      ].filter((f) => existsSync(f)),
    ];
    expect(left).toEqual([]);
    expect(existsSync("/var/lib/vz")).toBe(hadVz);
  }, 240_000);
});
