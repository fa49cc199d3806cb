// zeromq, loaded when a socket is first opened rather than when the bus modules are: loading it
// maps the native addon (and in the single executable may first write it to disk), a cost every
// command that never opens a socket would otherwise pay at start.
type Zmq = typeof import("zeromq");

let loading: Promise<Zmq> | undefined;

export function loadZmq(): Promise<Zmq> {
  loading ??= import("zeromq");
  return loading;
}
