import { describe, expect, it } from "vitest";
import {
  formatChain,
  isPveNatHook,
  isSnippetsRefusal,
  parseChain,
  parseStorageCfg,
  snippetPath,
  snippetsHelp,
} from "../../../src/pve/hookscript.js";

const STORAGE_CFG = `dir: local
	path /var/lib/vz
	content iso,vztmpl,backup

lvmthin: local-lvm
	thinpool data
	vgname pve
	content rootdir,images

cephfs: cephfs
	path /mnt/pve/cephfs
	content backup,vztmpl,iso,snippets
`;

describe("parseStorageCfg", () => {
  it("reads ids, types, paths and content", () => {
    expect([...parseStorageCfg(STORAGE_CFG).values()]).toEqual([
      { type: "dir", id: "local", path: "/var/lib/vz", content: ["iso", "vztmpl", "backup"] },
      { type: "lvmthin", id: "local-lvm", path: null, content: ["rootdir", "images"] },
      {
        type: "cephfs",
        id: "cephfs",
        path: "/mnt/pve/cephfs",
        content: ["backup", "vztmpl", "iso", "snippets"],
      },
    ]);
  });

  it("knows PVE's default local storage when the file is missing", () => {
    expect(parseStorageCfg(null).get("local")).toEqual({
      type: "dir",
      id: "local",
      path: "/var/lib/vz",
      content: ["iso", "vztmpl", "backup"],
    });
  });
});

describe("snippetPath", () => {
  const storages = parseStorageCfg(STORAGE_CFG);
  it.each<[string, string | RegExp]>([
    ["local:snippets/pve-nat-hook", "/var/lib/vz/snippets/pve-nat-hook"],
    ["cephfs:snippets/hook.pl", "/mnt/pve/cephfs/snippets/hook.pl"],
    ["local-lvm:snippets/x", /no directory path/],
    ["nowhere:snippets/x", /not defined/],
    ["local:iso/x.iso", /not a snippets volume/],
    ["local:snippets/../../etc/passwd", /not a snippets volume/],
    ["local:snippets/a b", /not a snippets volume/],
  ])("%s → %s", (volid, expected) => {
    const got = snippetPath(volid, storages);
    if (typeof expected === "string") expect(got).toBe(expected);
    else expect(typeof got === "object" && got.error).toMatch(expected);
  });
});

describe("chain entries", () => {
  it("round-trip as two lines", () => {
    const entry = { volid: "local:snippets/a.sh", path: "/var/lib/vz/snippets/a.sh" };
    expect(formatChain(entry)).toBe("local:snippets/a.sh\n/var/lib/vz/snippets/a.sh\n");
    expect(parseChain(formatChain(entry))).toEqual(entry);
  });

  it.each(["", "local:snippets/a.sh\n", "local:snippets/a.sh\nrelative/path\n"])(
    "rejects %j",
    (text) => {
      expect(parseChain(text)).toBeNull();
    },
  );

  it("refuses a multi-line value", () => {
    expect(() => formatChain({ volid: "a\nb", path: "/x" })).toThrow();
  });
});

describe("isPveNatHook", () => {
  it.each<[string, boolean]>([
    ["local:snippets/pve-nat-hook", true],
    ["cephfs:snippets/pve-nat-hook", true],
    ["local:snippets/pve-nat-hook.sh", false],
    ["local:snippets/other", false],
    ["pve-nat-hook", false],
  ])("%s → %s", (volid, expected) => {
    expect(isPveNatHook(volid)).toBe(expected);
  });
});

describe("snippets advice", () => {
  it("keeps the storage's content types and adds snippets", () => {
    expect(snippetsHelp(parseStorageCfg(STORAGE_CFG))).toBe(
      "storage 'local' must allow snippets and /var/lib/vz/snippets/pve-nat-hook must exist and be " +
        "executable (the package installs it). Enable them with: pvesm set local --content " +
        "iso,vztmpl,backup,snippets (this keeps the content types the storage already has)",
    );
  });

  it.each<[string, boolean]>([
    ["hookscript: 'local:snippets/pve-nat-hook' is not in the snippets directory", true],
    ["script 'local:snippets/pve-nat-hook' does not exist", true],
    ["storage 'local' does not support content-type 'snippets'", true],
    ["VM 107 is locked (backup)", false],
  ])("recognises %j: %s", (output, expected) => {
    expect(isSnippetsRefusal(output)).toBe(expected);
  });
});
