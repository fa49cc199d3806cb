#!/usr/bin/env bash
# pve-nat demo: a two-minute tour on a simulated Proxmox node built from network namespaces.
# Run as root (sudo npm run demo). Touches nothing outside the namespaces and temp dir it
# creates, and removes them on exit, on error and on Ctrl-C.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUFFIX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
NS_INET=pvenat-inet-$SUFFIX NS_CLA=pvenat-cla-$SUFFIX NS_CLB=pvenat-clb-$SUFFIX
NS_REM=pvenat-rem-$SUFFIX NS_NODE=pvenat-node-$SUFFIX
NS_107=pvenat-g107-$SUFFIX NS_108=pvenat-g108-$SUFFIX
ALL_NS=()
WORK=
DAEMON_PID=
PAUSE=${DEMO_PAUSE:-1}

# ---------------------------------------------------------------------------------------------
# Presentation

if [ -t 1 ]; then B=$'\e[1m' D=$'\e[2m' C=$'\e[36m' G=$'\e[32m' R=$'\e[31m' N=$'\e[0m'; else B= D= C= G= R= N=; fi
step() {
  sleep "$PAUSE"
  printf '\n%s━━ %s%s\n' "$B" "$*" "$N"
}
say() { printf '%s\n' "$*"; }
# Shows a command the way an admin would type it on the node, then runs it there.
on_node() {
  printf '%sroot@pve1:~# %s%s\n' "$C" "$*" "$N"
  ip netns exec "$NS_NODE" env PATH="$WORK/bin:$PATH" "$@" 2>&1 | sed 's/^/  /' || true
}
on() {
  local who=$1 ns=$2
  shift 2
  printf '%s%s$ %s%s\n' "$C" "$who" "$*" "$N"
  ip netns exec "$ns" "$@" 2>&1 | sed 's/^/  /' || true
}
# Shows a file of the simulated node under the path the admin knows.
show() {
  printf '%sroot@pve1:~# %s %s%s\n' "$C" "${2:-cat}" "$1" "$N"
  ${2:-cat} "$ROOT$1" | sed 's/^/  /'
}
ok() { printf '  %s✔ %s%s\n' "$G" "$*" "$N"; }
bad() { printf '  %s✘ %s%s\n' "$R" "$*" "$N"; }

# ---------------------------------------------------------------------------------------------
# Cleanup, also on Ctrl-C

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null || true
  for ns in "${ALL_NS[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  [ -n "$WORK" ] && rm -rf "$WORK"
  printf '\n%sCleaned up: namespaces deleted, temp files removed.%s\n' "$D" "$N"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Prerequisites

if [ "$(id -u)" -ne 0 ]; then
  echo "The demo creates network namespaces: run it as root (sudo npm run demo)." >&2
  exit 1
fi
missing=()
for pair in iptables:iptables ip:iproute2 conntrack:conntrack socat:socat; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "Installing ${missing[*]} ..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
command -v node >/dev/null || { echo "Node.js >= 20 is needed to build pve-nat." >&2; exit 1; }

printf '%spve-nat demo%s — port forwards and masquerading for Proxmox guests, from the\n' "$B" "$N"
say "firewall rules you already write. Everything below runs on a simulated node made of"
say "network namespaces; real packets, real iptables, real conntrack."

step "Build"
cd "$REPO"
[ -d node_modules ] || npm ci --no-audit --no-fund
if [ -n "${PVE_NAT_BIN:-}" ]; then
  say "Using PVE_NAT_BIN=$PVE_NAT_BIN"
  BIN=("$PVE_NAT_BIN")
else
  node scripts/bundle.mjs
  BIN=(node "$REPO/dist/pve-nat.cjs")
  say "Built dist/pve-nat.cjs"
fi

# ---------------------------------------------------------------------------------------------
# The simulated node

WORK=$(mktemp -d /tmp/pvenat-demo-XXXXXX)
ROOT=$WORK/root
mkdir -p "$WORK/bin"
# The node's files (guest configs, their rules, pve-nat.conf): the tests' simulated-node builder.
node scripts/demo-node.mjs "$ROOT"
# `pve-nat` on this demo's PATH = the real binary with --root pointing at the simulated node.
printf '#!/bin/sh\nexec %s "$@" --root %s\n' "${BIN[*]}" "$ROOT" >"$WORK/bin/pve-nat"
chmod +x "$WORK/bin/pve-nat"

step "A Proxmox node, in network namespaces"
cat <<EOF
  internet ─ client  198.51.100.7   (you, at the office)
           ─ client  198.51.100.8   (someone else)
           ─ remote  198.51.100.20  (an https server somewhere)
           │
  pve1     vmbr0  203.0.113.10/24   public address
           vmbr1  10.10.10.1/24     guests' gateway
           ├─ VM 107 "web"  10.10.10.107  NIC with firewall=1 (tap107i0 → fwbr107i0 → fwln/fwpr → vmbr1)
           └─ CT 108 "dns"  10.10.10.108  plain NIC (veth108i0 → vmbr1)
EOF

nsx() { ip netns exec "$1" "${@:2}"; }
add_ns() {
  ip netns add "$1"
  ALL_NS+=("$1")
  nsx "$1" ip link set lo up
  nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}
bridge() { nsx "$1" ip link add "$2" type bridge stp_state 0 forward_delay 0 && nsx "$1" ip link set "$2" up; }
for ns in "$NS_INET" "$NS_CLA" "$NS_CLB" "$NS_REM" "$NS_NODE" "$NS_107" "$NS_108"; do add_ns "$ns"; done

bridge "$NS_INET" br0
nsx "$NS_INET" ip addr add 198.51.100.1/24 dev br0
nsx "$NS_INET" sysctl -qw net.ipv4.ip_forward=1
for spec in "$NS_CLA:pa:198.51.100.7" "$NS_CLB:pb:198.51.100.8" "$NS_REM:pr:198.51.100.20"; do
  IFS=: read -r ns port addr <<<"$spec"
  ip -n "$NS_INET" link add "$port" type veth peer name eth0 netns "$ns"
  ip -n "$NS_INET" link set "$port" master br0 up
  nsx "$ns" ip addr add "$addr/24" dev eth0
  nsx "$ns" ip link set eth0 up
  nsx "$ns" ip route add default via 198.51.100.1
done
bridge "$NS_NODE" vmbr0
ip -n "$NS_NODE" link add eno1 type veth peer name up0 netns "$NS_INET"
nsx "$NS_NODE" ip link set eno1 master vmbr0 up
nsx "$NS_NODE" ip addr add 203.0.113.10/24 dev vmbr0
nsx "$NS_INET" ip addr add 203.0.113.1/24 dev up0
nsx "$NS_INET" ip link set up0 up
nsx "$NS_NODE" ip route add default via 203.0.113.1
bridge "$NS_NODE" vmbr1
nsx "$NS_NODE" ip addr add 10.10.10.1/24 dev vmbr1
nsx "$NS_NODE" sysctl -qw net.bridge.bridge-nf-call-iptables=1

# Guest NICs appear when the guest starts, as qemu/lxc create them.
plug_107() {
  ip -n "$NS_NODE" link add tap107i0 type veth peer name eth0 netns "$NS_107"
  nsx "$NS_107" ip link set eth0 address bc:24:11:00:00:6b
  bridge "$NS_NODE" fwbr107i0
  nsx "$NS_NODE" ip link add fwln107i0 type veth peer name fwpr107p0
  nsx "$NS_NODE" ip link set fwln107i0 up
  nsx "$NS_NODE" ip link set fwpr107p0 up
  nsx "$NS_NODE" ip link set fwpr107p0 master vmbr1
  nsx "$NS_NODE" ip link set fwln107i0 master fwbr107i0
  nsx "$NS_NODE" ip link set tap107i0 master fwbr107i0 up
  nsx "$NS_107" ip addr add 10.10.10.107/24 dev eth0
  nsx "$NS_107" ip link set eth0 up
  nsx "$NS_107" ip route add default via 10.10.10.1
}
plug_108() {
  ip -n "$NS_NODE" link add veth108i0 type veth peer name eth0 netns "$NS_108"
  nsx "$NS_NODE" ip link set veth108i0 master vmbr1 up
  nsx "$NS_108" ip addr add 10.10.10.108/24 dev eth0
  nsx "$NS_108" ip link set eth0 up
  nsx "$NS_108" ip route add default via 10.10.10.1
}
bg() {
  ip netns exec "$1" "${@:2}" >/dev/null 2>&1 &
  disown
}
# Run state the way Proxmox reads it: a qemu pidfile whose process has `-pidfile <path>`, an
# LXC command socket in the node's network namespace.
run_107() {
  ip netns exec "$NS_NODE" sh -c 'while :; do sleep 3600; done' kvm -id 107 \
    -pidfile "$ROOT/var/run/qemu-server/107.pid" >/dev/null 2>&1 &
  echo $! >"$ROOT/var/run/qemu-server/107.pid"
  disown
}
run_108() { bg "$NS_NODE" socat ABSTRACT-LISTEN:/var/lib/lxc/108/command,fork /dev/null; }
stop_107() {
  kill "$(cat "$ROOT/var/run/qemu-server/107.pid")" 2>/dev/null || true
  rm -f "$ROOT/var/run/qemu-server/107.pid"
  ip -n "$NS_NODE" link del tap107i0 2>/dev/null || true
  ip -n "$NS_NODE" link del fwln107i0 2>/dev/null || true
  ip -n "$NS_NODE" link del fwbr107i0 2>/dev/null || true
}
# Services inside the guests, and on the remote server.
serve_107() {
  # (no commas or colons in socat's SYSTEM text: they would end the address)
  bg "$NS_107" socat TCP-LISTEN:22,fork,reuseaddr 'SYSTEM:echo SSH-2.0-OpenSSH_9.2 on vm 107 - you are $SOCAT_PEERADDR'
  bg "$NS_107" socat TCP-LISTEN:80,fork,reuseaddr 'SYSTEM:echo hello from the web server on vm 107 - you are $SOCAT_PEERADDR'
}
serve_108() { bg "$NS_108" socat UDP-RECVFROM:53,fork 'SYSTEM:echo dns answer from ct 108'; }
bg "$NS_REM" socat TCP-LISTEN:443,fork,reuseaddr 'SYSTEM:echo remote https server - you are $SOCAT_PEERADDR'
bg "$NS_REM" socat TCP-LISTEN:80,fork,reuseaddr 'SYSTEM:echo remote http server - you are $SOCAT_PEERADDR'

# The admin's own NAT rule, made by hand long before pve-nat: it must survive everything below.
nsx "$NS_NODE" iptables -w -t nat -A PREROUTING -i vmbr0 -p tcp --dport 2222 \
  -m comment --comment "my own rule" -j DNAT --to-destination 10.10.10.50:22

step "The rules, as you write them in the web UI (Guest → Firewall) — the comment starts with NAT"
show /etc/pve/firewall/107.fw
show /etc/pve/firewall/108.fw

step "pve-nat check: every rule judged the way pve-firewall judges it"
on_node pve-nat check || true

step "Start the daemon (systemd runs it as pve-nat.service)"
ip netns exec "$NS_NODE" "$WORK/bin/pve-nat" daemon >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
disown
for _ in $(seq 100); do grep -q '"msg":"ready"' "$WORK/daemon.log" && break; sleep 0.1; done
grep -q '"msg":"ready"' "$WORK/daemon.log" || { bad "daemon did not start"; cat "$WORK/daemon.log"; exit 1; }
ok "daemon ready"
on_node pve-nat status

step "qm start 107; pct start 108 — Proxmox runs the hookscript at pre-start and post-start"
hook() {
  printf '%s[task log] %s%s\n' "$D" "pve-nat-hook $*" "$N"
  local t0 t1
  t0=$(date +%s%N)
  ip netns exec "$NS_NODE" env PVE_NAT_BIN="$WORK/bin/pve-nat" sh "$REPO/hooks/pve-nat-hook" "$@" 2>&1 | sed 's/^/  /'
  t1=$(date +%s%N)
  printf '  %s(hook took %d ms)%s\n' "$D" $(((t1 - t0) / 1000000)) "$N"
}
hook 107 pre-start
plug_107
run_107
serve_107
hook 107 post-start
hook 108 pre-start
plug_108
run_108
serve_108
hook 108 post-start
on_node pve-nat status

step "From the office (198.51.100.7): ssh to the node's public address, port 822"
on "office 198.51.100.7" "$NS_CLA" timeout 5 socat -T2 - TCP:203.0.113.10:822,connect-timeout=2 </dev/null
step "From anywhere else (198.51.100.8): the same port is closed — the rule has -source"
on "elsewhere 198.51.100.8" "$NS_CLB" timeout 5 socat -T2 - TCP:203.0.113.10:822,connect-timeout=2 </dev/null
step "UDP into the container: public udp/5353 → ct 108 udp/53"
printf 'query\n' | on "office 198.51.100.7" "$NS_CLA" timeout 5 socat -T1 - UDP:203.0.113.10:5353

step "Out from VM 107 (firewall=1 NIC, first packet since boot): https to the remote server"
say "  The remote sees the node's public address: masqueraded, though the NIC sits behind fwbr."
on "vm 107 (10.10.10.107)" "$NS_107" timeout 5 socat -T2 - TCP:198.51.100.20:443,connect-timeout=2 </dev/null
say "  Other destinations are not NATed by that rule (no answer comes back to 10.10.10.107):"
on "vm 107 (10.10.10.107)" "$NS_107" timeout 3 socat -T1 - TCP:198.51.100.20:80,connect-timeout=1 </dev/null

step "Edit a rule live (web UI): publish VM 107's web server on public port 8080"
cat >>"$ROOT/etc/pve/firewall/107.fw" <<'EOF'
IN ACCEPT -p tcp -dport 80 # NAT:8080 web
EOF
show /etc/pve/firewall/107.fw "tail -n 1"
t0=$(date +%s%N)
live=no
for _ in $(seq 50); do
  if ip netns exec "$NS_CLB" timeout 2 socat -T1 - TCP:203.0.113.10:8080,connect-timeout=1 </dev/null 2>/dev/null | grep -q hello; then
    live=yes
    break
  fi
  sleep 0.1
done
t1=$(date +%s%N)
if [ "$live" = yes ]; then
  ok "live after $(((t1 - t0) / 1000000)) ms — no hook, no reload: the daemon noticed the edit"
else
  bad "not live after $(((t1 - t0) / 1000000)) ms"
fi
on "elsewhere 198.51.100.8" "$NS_CLB" timeout 5 socat -T2 - TCP:203.0.113.10:8080,connect-timeout=2 </dev/null
on_node pve-nat status

step "Your own NAT rules stay yours: pve-nat only ever touches its PVENAT- chains"
say "  (one jump at the top of each builtin chain; the hand-made rule below it is untouched)"
on_node iptables -t nat -S PREROUTING
on_node iptables -t nat -S PVENAT-107-DNAT

step "qm stop 107 — the post-stop hook removes its forwards at once"
stop_107
hook 107 post-stop
on "office 198.51.100.7" "$NS_CLA" timeout 5 socat -T2 - TCP:203.0.113.10:822,connect-timeout=2 </dev/null
on_node pve-nat status

step "qm start 107 again — and what a monitoring tool sees: pve-nat events"
ip netns exec "$NS_NODE" timeout 10 "$WORK/bin/pve-nat" events --count 2 >"$WORK/events.log" 2>&1 &
EVENTS_PID=$!
sleep 0.5
hook 107 pre-start
plug_107
run_107
serve_107
hook 107 post-start
wait "$EVENTS_PID" || true
printf '%sroot@pve1:~# pve-nat events%s\n' "$C" "$N"
sed 's/^/  /' "$WORK/events.log"
on "office 198.51.100.7" "$NS_CLA" timeout 5 socat -T2 - TCP:203.0.113.10:822,connect-timeout=2 </dev/null

step "That's it"
say "  Install the .deb on each node, run 'pve-nat attach --all', and write NAT rules as above."
