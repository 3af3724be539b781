#!/bin/sh
# The image's entry point: say plainly, before polyfn starts, which of the sandbox's needs this container lacks,
# then run polyfn. polyfn itself probes the same things and uses every layer it can (its "instance isolation:"
# start-up line and `polyfn doctor` say which); without them it runs degraded, it does not refuse to start —
# unless POLYFN_REQUIRE_SANDBOX=1, for operators who would rather have no node than a weaker one.
set -eu

missing=""
caps=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status 2>/dev/null || echo 0)
has_cap() { [ $(( (0x$caps >> $1) & 1 )) -eq 1 ]; }
[ "$(id -u)" = 0 ] || missing="$missing root(uid 0)"
has_cap 21 || missing="$missing CAP_SYS_ADMIN(namespaces,mounts)"
has_cap 7 || missing="$missing CAP_SETUID(per-function-uid)"
has_cap 6 || missing="$missing CAP_SETGID(per-function-gid)"
has_cap 12 || missing="$missing CAP_NET_ADMIN(egress-veth+nftables)"
cgroup_ok=""
for d in /sys/fs/cgroup/memory /sys/fs/cgroup; do [ -w "$d" ] && cgroup_ok=1 && break; done
[ -n "$cgroup_ok" ] || missing="$missing writable-cgroup(memory/pids/cpu-limits)"

if [ -n "$missing" ] && [ "${1:-serve}" = serve ]; then
  echo "polyfn image: this container lacks:$missing" >&2
  echo "polyfn image: functions will run with fewer isolation layers (see the 'instance isolation' line below and" \
       "'polyfn doctor'); run the container with --privileged (or --cap-add SYS_ADMIN,SETUID,SETGID,NET_ADMIN," \
       "no seccomp/AppArmor profile that forbids unshare/mount, a writable cgroup) for the full sandbox" >&2
  if [ "${POLYFN_REQUIRE_SANDBOX:-0}" = 1 ]; then
    echo "polyfn image: POLYFN_REQUIRE_SANDBOX=1: not starting" >&2
    exit 78
  fi
fi
exec polyfn "$@"
