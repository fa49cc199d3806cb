import { formatPorts, type PortRange, parsePorts } from "../pve/ports.js";

// Port sets of a forward: parsing for NAT, public → private translation, multiport chunks.

const MAX_MULTIPORT = 15;

function samePorts(a: PortRange[], b: PortRange[]): boolean {
  const norm = (x: PortRange[]) =>
    formatPorts(
      [...x]
        .sort((p, q) => p.from - q.from)
        .reduce<PortRange[]>((acc, r) => {
          const last = acc[acc.length - 1];
          if (last && r.from <= last.to + 1) last.to = Math.max(last.to, r.to);
          else acc.push({ ...r });
          return acc;
        }, []),
    );
  return norm(a) === norm(b);
}

/** DNAT port translation in iptables notation, or an error naming what can be mapped. */
export function mapPorts(
  pub: PortRange[],
  priv: PortRange[],
): { to: string | null } | { error: string } {
  const p = priv[0];
  if (priv.length === 1 && p && p.from === p.to) return { to: String(p.from) };
  if (samePorts(pub, priv)) return { to: null };
  const q = pub[0];
  if (pub.length === 1 && priv.length === 1 && q && p && q.to - q.from === p.to - p.from) {
    return { to: `${p.from}-${p.to}/${q.from}` };
  }
  return {
    error:
      `public ports ${formatPorts(pub)} cannot be mapped to private ports ${formatPorts(priv)}: ` +
      "use one private port, the same ports, or two ranges of equal length",
  };
}

/** Port lists split so each multiport match has at most 15 slots (a range takes 2). */
export function chunks(ranges: PortRange[] | null): Array<string | null> {
  if (ranges === null) return [null];
  if (ranges.length === 1) return [formatPorts(ranges)];
  const out: string[] = [];
  let cur: PortRange[] = [];
  let slots = 0;
  for (const r of ranges) {
    const n = r.from === r.to ? 1 : 2;
    if (slots + n > MAX_MULTIPORT) {
      out.push(formatPorts(cur));
      cur = [];
      slots = 0;
    }
    cur.push(r);
    slots += n;
  }
  if (cur.length > 0) out.push(formatPorts(cur));
  return out;
}

export function ports(text: string | null, what: string): PortRange[] | null | { error: string } {
  if (text === null) return null;
  const r = parsePorts(text);
  if ("error" in r) return { error: `${what}: ${r.error}` };
  if (r.length === 0) return { error: `${what}: no port in '${text}'` };
  if (r.some((p) => p.from === 0)) return { error: `${what}: port 0 cannot be forwarded` };
  return r;
}
