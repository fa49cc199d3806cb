// Types of packaging/lib.mjs for the unit tests (the build scripts themselves are plain ESM).
export declare const TARGET_LIBS: Readonly<Record<"GLIBC" | "GLIBCXX" | "GCC", string>>;
export declare const ZEROMQ_ADDON: string;
export declare const SEA_FUSE: string;
export declare const DEBIAN_REVISION: string;
export declare function compareVersions(a: string, b: string): -1 | 0 | 1;
export declare function requiredSymbolVersions(objdumpText: string): Record<string, string>;
export declare function unmetRequirements(
  required: Record<string, string>,
  target?: Record<string, string>,
): string[];
export declare function debianVersion(upstream: string): string;
export declare function changelogVersion(text: string): string;
export declare function changelogDate(text: string): Date;
export declare function renderControl(f: {
  version: string;
  installedSizeKiB: number;
  depends: string[];
  maintainer: string;
  homepage?: string;
}): string;
export declare function renderMd5sums(entries: Array<[string, string]>): string;
