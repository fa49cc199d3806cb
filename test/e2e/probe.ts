// Client-side probes, run with `node -e` inside a namespace: one connection or datagram, a hard
// deadline, and a JSON line saying exactly what arrived.

export type ProbeStatus = "data" | "refused" | "timeout" | "nodata" | "error";

export interface ProbeResult {
  status: ProbeStatus;
  /** Everything received (TCP: until the peer closed or the deadline; UDP: the first reply). */
  data: string;
  /** Local address:port the probe used (what the far side should see without NAT). */
  local: string | null;
  error: string | null;
}

export const TCP_PROBE = `
const net = require("net");
const e = process.env;
let data = "", local = null, connected = false, done = false;
const finish = (status, error) => {
  if (done) return; done = true;
  process.stdout.write(JSON.stringify({ status, data, local, error: error || null }) + "\\n");
  process.exit(0);
};
const s = net.connect({ host: e.PROBE_ADDR, port: Number(e.PROBE_PORT) });
s.setTimeout(Number(e.PROBE_MS));
s.on("connect", () => { connected = true; local = s.localAddress + ":" + s.localPort; if (e.PROBE_SEND) s.write(e.PROBE_SEND); });
s.on("data", (d) => { data += d.toString(); });
s.on("end", () => finish(data ? "data" : "nodata"));
s.on("timeout", () => finish(connected ? (data ? "data" : "nodata") : "timeout"));
s.on("error", (err) => finish(err.code === "ECONNREFUSED" ? "refused" : err.code === "ECONNRESET" && data ? "data" : "error", err.code || String(err)));
`;

export const UDP_PROBE = `
const dgram = require("dgram");
const e = process.env;
const s = dgram.createSocket("udp4");
let done = false, local = null;
const finish = (status, data, error) => {
  if (done) return; done = true;
  process.stdout.write(JSON.stringify({ status, data: data || "", local, error: error || null }) + "\\n");
  process.exit(0);
};
s.on("message", (m) => finish("data", m.toString()));
s.on("error", (err) => finish(err.code === "ECONNREFUSED" ? "refused" : "error", "", err.code || String(err)));
s.bind(e.PROBE_SPORT ? Number(e.PROBE_SPORT) : 0, () => {
  const a = s.address(); local = a.address + ":" + a.port;
  s.connect(Number(e.PROBE_PORT), e.PROBE_ADDR, () => {
    s.send(e.PROBE_SEND || "ping\\n");
  });
});
setTimeout(() => finish("timeout"), Number(e.PROBE_MS));
`;

/** UDP service: answers every datagram with "<banner> from=<peer address>\n", at once and
 *  independently (socat's UDP-RECVFROM,fork serializes datagrams through child processes). */
export const UDP_SERVICE = `
const dgram = require("dgram");
const s = dgram.createSocket("udp4");
s.on("message", (m, r) => s.send(process.env.SERVICE_BANNER + " from=" + r.address + "\\n", r.port, r.address));
s.bind(Number(process.env.SERVICE_PORT));
`;
