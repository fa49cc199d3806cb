// Pure helpers of the package build (packaging/build.mjs), kept apart so unit tests can reach
// them without building anything.

/** The oldest system the package supports: Debian 12 (glibc 2.36, GCC 12's libstdc++). */
export const TARGET_LIBS = { GLIBC: "2.36", GLIBCXX: "3.4.30", GCC: "12.0" };

/** Prebuilt zeromq addon embedded in the executable (see README.md: the others need glibc 2.38). */
export const ZEROMQ_ADDON = "node_modules/zeromq/build/linux/x64/node/glibc-127-Release/addon.node";

/** Node's marker that postject flips to say "this binary carries a SEA blob". */
export const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

/** Dotted version compare: -1, 0, 1. */
export function compareVersions(a, b) {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/**
 * Highest symbol version per library namespace that an ELF file requires, from `objdump -T`
 * output: { GLIBC: "2.28", GLIBCXX: "3.4.21", GCC: "3.4" }.
 * @param {string} objdumpText
 * @returns {Record<string, string>}
 */
export function requiredSymbolVersions(objdumpText) {
  const max = {};
  // Only undefined symbols ("*UND*") are requirements; defined ones are what the file offers.
  for (const line of objdumpText.split("\n")) {
    if (!line.includes("*UND*")) continue;
    const m = /\b(GLIBC|GLIBCXX|GCC|CXXABI)_(\d+(?:\.\d+)*)\b/.exec(line);
    if (!m) continue;
    const [, ns, ver] = m;
    if (!max[ns] || compareVersions(ver, max[ns]) > 0) max[ns] = ver;
  }
  return max;
}

/** Requirements that the target system does not meet, as readable strings. */
export function unmetRequirements(required, target = TARGET_LIBS) {
  const unmet = [];
  for (const [ns, ver] of Object.entries(required)) {
    const have = target[ns];
    if (have && compareVersions(ver, have) > 0) unmet.push(`${ns}_${ver} > ${have}`);
  }
  return unmet;
}

/** Debian revision appended to the upstream version (the package is not Debian-native). */
export const DEBIAN_REVISION = "1";

export function debianVersion(upstream) {
  if (!/^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+]+)?$/.test(upstream)) {
    throw new Error(`version "${upstream}" cannot become a Debian version`);
  }
  // npm's pre-release dash ("1.0.0-rc.1") would be read by dpkg as a revision.
  return `${upstream.replace("-", "~")}-${DEBIAN_REVISION}`;
}

/** Version of the newest entry of a debian/changelog. */
export function changelogVersion(text) {
  const m = /^[a-z0-9][a-z0-9.+-]*\s+\(([^)]+)\)/.exec(text);
  if (!m) throw new Error("debian changelog: first line is not `package (version) dist; ...`");
  return m[1];
}

/** RFC 2822 date of the newest entry (used as SOURCE_DATE_EPOCH for reproducible files). */
export function changelogDate(text) {
  const m = /^ -- .+<.+>\s{2}(.+)$/m.exec(text);
  if (!m) throw new Error("debian changelog: no trailer line");
  const t = Date.parse(m[1]);
  if (Number.isNaN(t)) throw new Error(`debian changelog: bad date "${m[1]}"`);
  return new Date(t);
}

/**
 * DEBIAN/control of the binary package.
 * @param {{ version: string; installedSizeKiB: number; depends: string[]; maintainer: string; homepage?: string }} f
 */
export function renderControl(f) {
  const lines = [
    "Package: pve-nat",
    `Version: ${f.version}`,
    "Architecture: amd64",
    `Maintainer: ${f.maintainer}`,
    `Installed-Size: ${f.installedSizeKiB}`,
    `Depends: ${f.depends.join(", ")}`,
    "Section: net",
    "Priority: optional",
  ];
  if (f.homepage) lines.push(`Homepage: ${f.homepage}`);
  lines.push(
    "Description: port forwarding and outbound NAT for Proxmox VE guests",
    " pve-nat gives Proxmox VE guests behind one public address their port",
    " forwards (DNAT) and outbound masquerading (SNAT), driven by the Proxmox",
    " firewall rules an administrator already writes: a rule whose comment starts",
    " with the word NAT also becomes a NAT rule. Nothing in Proxmox is patched.",
    " .",
    " A daemon owns its own iptables chains (PVENAT-*), applies a guest's rules",
    " atomically when the guest starts (through a hookscript) and keeps them in",
    " sync with firewall edits made anywhere in the cluster. Rules pve-nat did not",
    " create are never touched.",
    " .",
    " The executable embeds its runtime (Node.js) and the ZeroMQ library.",
  );
  return `${lines.join("\n")}\n`;
}

/** DEBIAN/md5sums: "<md5>  <path without leading slash>" per regular file, sorted. */
export function renderMd5sums(entries) {
  return entries
    .map(([file, md5]) => `${md5}  ${file.replace(/^\/+/, "")}`)
    .sort((a, b) => (a.slice(34) < b.slice(34) ? -1 : 1))
    .join("\n")
    .concat("\n");
}
