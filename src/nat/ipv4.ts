// IPv4 address sets as sorted, disjoint, inclusive integer intervals. Exact set arithmetic lets
// ipset `!` (nomatch) entries be honoured without RETURN rules, so every rendered rule means
// what it says on its own, whatever other rules its chain holds.

export interface Interval {
  lo: number;
  hi: number;
}

export type IpSet = Interval[];

export function ipToInt(ip: string): number {
  return ip.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

function normalize(set: Interval[]): IpSet {
  const sorted = [...set].sort((a, b) => a.lo - b.lo);
  const out: Interval[] = [];
  for (const iv of sorted) {
    const last = out[out.length - 1];
    if (last && iv.lo <= last.hi + 1) last.hi = Math.max(last.hi, iv.hi);
    else out.push({ ...iv });
  }
  return out;
}

export function union(a: IpSet, b: IpSet): IpSet {
  return normalize([...a, ...b]);
}

export function subtract(a: IpSet, b: IpSet): IpSet {
  let out = a.map((iv) => ({ ...iv }));
  for (const cut of b) {
    const next: Interval[] = [];
    for (const iv of out) {
      if (cut.hi < iv.lo || cut.lo > iv.hi) {
        next.push(iv);
        continue;
      }
      if (iv.lo < cut.lo) next.push({ lo: iv.lo, hi: cut.lo - 1 });
      if (iv.hi > cut.hi) next.push({ lo: cut.hi + 1, hi: iv.hi });
    }
    out = next;
  }
  return normalize(out);
}

export function contains(set: IpSet, ip: number): boolean {
  return set.some((iv) => iv.lo <= ip && ip <= iv.hi);
}

/** Smallest exact CIDR cover, "a.b.c.d/n" with host bits zero, in address order. */
export function toCidrs(set: IpSet): string[] {
  const out: string[] = [];
  for (const iv of normalize(set)) {
    let cur = iv.lo;
    while (cur <= iv.hi) {
      let size = 0;
      while (size < 32) {
        const block = 2 ** (size + 1);
        if (cur % block !== 0 || cur + block - 1 > iv.hi) break;
        size++;
      }
      out.push(`${intToIp(cur)}/${32 - size}`);
      cur += 2 ** size;
    }
  }
  return out;
}

/** Network of "10.10.10.5/24" → "10.10.10.0/24". */
export function networkOf(address: string, prefix: number): string {
  const size = 2 ** (32 - prefix);
  const n = ipToInt(address);
  return `${intToIp(n - (n % size))}/${prefix}`;
}

/** Single address of a one-address set, else null. */
export function singleAddress(set: IpSet): string | null {
  const only = set.length === 1 ? set[0] : undefined;
  return only && only.lo === only.hi ? intToIp(only.lo) : null;
}
