# Hosts mode of deploy/local-network (sourced by it; KL_HOSTS=1 at the first `up`): every daemon
# on a host of its own, i.e. a Linux network namespace with one address on a private bridge,
# 10.77.0.0/24, as an operator would run them on separate machines. Needs root and iproute2.
#
#   namespace  P-net     the bridge (br0) and one veth port per host: cutting a host's link is
#                        taking its port down, which drops its packets silently (no RST, no
#                        ICMP), like a pulled cable or a dead switch port
#   namespace  P-NAME    one per daemon (core1, ..., extender), address 10.77.0.X
#   namespace  P-client  10.77.0.100: where clients run (KL_CLIENT_NETNS in network.env)
# P is "kl" plus the network's base port divided by 100, so several networks can coexist; the
# host's own network is never touched (nothing listens outside the namespaces).
#
# Uses from local-network: $dir, $B, names, die, say.

hosts_on() { [ -f "$dir/conf/hosts" ]; }
hosts_prefix() { echo "kl$((B / 100))"; }

host_ip() { # NAME: its address in hosts mode
  case "$1" in
    core1) echo 10.77.0.11 ;; core2) echo 10.77.0.12 ;; core3) echo 10.77.0.13 ;;
    aggregator1) echo 10.77.0.21 ;; aggregator2) echo 10.77.0.22 ;;
    gateway1) echo 10.77.0.31 ;; gateway2) echo 10.77.0.32 ;;
    extender) echo 10.77.0.41 ;; client) echo 10.77.0.100 ;;
    *) die "no host named '$1'" ;;
  esac
}

host_of_offset() { # a port offset (the a() numbering) -> the daemon that listens on it
  case "$1" in
    1[1-5]) echo core1 ;; 2[1-5]) echo core2 ;; 3[1-5]) echo core3 ;;
    4[0-3]) echo aggregator1 ;; 5[0-3]) echo aggregator2 ;;
    6[0-3]) echo gateway1 ;; 7[0-3]) echo gateway2 ;; 8[0-3]) echo extender ;;
    *) die "no host for port offset $1" ;;
  esac
}

# Runs a command where clients are: in the client namespace in hosts mode, here otherwise.
nsx() { if hosts_on; then ip netns exec "$(hosts_prefix)-client" "$@"; else "$@"; fi; }

# The prefix that starts NAME's daemon on its host.
host_exec() { if hosts_on; then echo "ip netns exec $(hosts_prefix)-$1"; fi; }

hosts_add() { # NAME: a namespace with a veth into the bridge, its address, loopback up
  local p; p=$(hosts_prefix)
  local ns="$p-$1"
  ip netns list | grep -qw "$ns" && return 0
  ip netns add "$ns"
  ip -n "$p-net" link add "v-$1" type veth peer name eth0 netns "$ns"
  ip -n "$p-net" link set "v-$1" master br0 up
  ip -n "$ns" addr add "$(host_ip "$1")/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
}

hosts_up() { # the bridge and every host of the topology, once
  [ "$(id -u)" = 0 ] || die "KL_HOSTS=1 needs root (network namespaces)"
  command -v ip >/dev/null || die "KL_HOSTS=1 needs iproute2 (ip)"
  local p n; p=$(hosts_prefix)
  if ! ip netns list | grep -qw "$p-net"; then
    ip netns add "$p-net"
    ip -n "$p-net" link add br0 type bridge
    ip -n "$p-net" link set br0 up
    ip -n "$p-net" link set lo up
  fi
  for n in "${names[@]}" client; do hosts_add "$n"; done
}

hosts_down() { # every namespace of this network (their veths go with them)
  local p ns; p=$(hosts_prefix)
  for ns in $(ip netns list | awk '{print $1}' | grep "^$p-"); do ip netns del "$ns" 2>/dev/null || true; done
}

hosts_link() { # NAME up|down: that host's bridge port
  hosts_on || die "cut and heal need a network started with KL_HOSTS=1"
  local p; p=$(hosts_prefix)
  ip -n "$p-net" link show "v-$1" >/dev/null 2>&1 || die "no host named '$1' in this network"
  ip -n "$p-net" link set "v-$1" "$2"
  say "$1: link $2"
}
