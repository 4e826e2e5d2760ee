# shellcheck shell=bash
# A test bed of hosts on one machine, sourced by the cluster suites: N network
# namespaces ("hosts"), each joined by a veth pair to a bridge that lives in a
# namespace of its own (the "switch"), so nothing touches this machine's own
# network; each host runs its processes in a UTS namespace named after it, so
# the tools see N hosts (their hello compares host names). etcd runs in host 0.
#
#   bed_up N             hosts 0..N-1 at $BED_NET.1.. (/24); sets BED_NS[i], BED_IP[i]
#   bed_run I CMD...     CMD in host I (network and host name); its pid is the command's
#   bed_etcd_start       etcd in host 0 on tmpfs; sets BED_ETCD (etcd://ip:port)
#   bed_etcd_stop        SIGKILL it (the data dir stays: bed_etcd_start restarts on it)
#   bed_link I up|down   host I's cable at the switch
#   bed_loss I PCT       nftables: drop PCT% of the packets host I receives (0: none)
#   bed_rate I RATE      tc tbf on host I's interface, both directions' sender side
#                        at the switch too ("" removes it)
#   bed_kill I           SIGKILL every process in host I
#   bed_keys PREFIX N    etcd holds at least N keys under PREFIX
#   bed_down             remove everything (also run on EXIT by bed_up's trap)
#   start, launch, wait_all   processes in hosts, their output in $BED_OUT (below)
#
# Names carry this shell's pid (several runs may overlap on one machine);
# addresses are 10.(100+pid%50).(pid/50%250).x.

BED_NS=() BED_IP=() BED_ETCD= BED_ETCD_PID= BED_ETCD_PORT=2379
BED_TAG=xc$$
BED_NET=10.$((100 + $$ % 50)).$(($$ / 50 % 250))
BED_SW=${BED_TAG}sw
BED_TMP= BED_OUT=

bed_fail() { echo "bed: $*" >&2; return 1; }

bed_up() { # N
	local n=$1 i err
	BED_TMP=$(mktemp -d "${TMPDIR:-/tmp}/xfer-bed.XXXXXX")
	BED_OUT=$BED_TMP/o
	mkdir -p "$BED_OUT"
	err=$BED_TMP/err
	trap bed_down EXIT
	ip netns add "$BED_SW" 2>"$err" || { bed_fail "cannot create a network namespace: $(head -1 "$err")"; return 1; }
	{ ip -n "$BED_SW" link add br0 type bridge && ip -n "$BED_SW" link set br0 up &&
	  ip -n "$BED_SW" link set lo up; } 2>"$err" || { bed_fail "no bridge: $(head -1 "$err")"; return 1; }
	for ((i = 0; i < n; i++)); do
		BED_NS[i]=${BED_TAG}h$i
		BED_IP[i]=$BED_NET.$((i + 1))
		{ ip netns add "${BED_NS[i]}" &&
		  ip link add "${BED_TAG}e$i" type veth peer name "${BED_TAG}p$i" &&
		  ip link set "${BED_TAG}e$i" netns "${BED_NS[i]}" &&
		  ip link set "${BED_TAG}p$i" netns "$BED_SW" &&
		  ip -n "$BED_SW" link set "${BED_TAG}p$i" master br0 up &&
		  ip -n "${BED_NS[i]}" link set "${BED_TAG}e$i" name eth0 &&
		  ip -n "${BED_NS[i]}" addr add "${BED_IP[i]}/24" dev eth0 &&
		  ip -n "${BED_NS[i]}" link set eth0 up &&
		  ip -n "${BED_NS[i]}" link set lo up; } 2>"$err" ||
			{ bed_fail "host $i: $(head -1 "$err")"; return 1; }
	done
}

# bed_wait SECONDS CMD...: until CMD succeeds, every 50 ms
bed_wait() {
	local end=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -ge $end ] && return 1
		sleep 0.05
	done
}

bed_run() { # I CMD...
	local i=$1
	shift
	exec ip netns exec "${BED_NS[i]}" unshare -u sh -c 'hostname "$0" && exec "$@"' "host$i" "$@"
}

bed_etcd_start() {
	local ip=${BED_IP[0]}
	(bed_run 0 etcd --name bed --data-dir "$BED_TMP/etcd" \
		--listen-client-urls "http://$ip:$BED_ETCD_PORT" \
		--advertise-client-urls "http://$ip:$BED_ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:2380" \
		--initial-advertise-peer-urls "http://127.0.0.1:2380" \
		--initial-cluster "bed=http://127.0.0.1:2380" --log-level warn \
		>> "$BED_TMP/etcd.log" 2>&1) &
	BED_ETCD_PID=$!
	BED_ETCD=etcd://$ip:$BED_ETCD_PORT
	# healthy, as every host sees it (each across the bridge)
	local i
	for i in "${!BED_NS[@]}"; do
		bed_wait 20 ip netns exec "${BED_NS[i]}" curl -sf -m 1 "http://$ip:$BED_ETCD_PORT/health" ||
			{ bed_fail "etcd is not healthy as host $i sees it: $(tail -3 "$BED_TMP/etcd.log")"; return 1; }
	done
}

bed_etcd_stop() {
	[ -n "$BED_ETCD_PID" ] || return 0
	kill -9 "$BED_ETCD_PID" 2>/dev/null
	wait "$BED_ETCD_PID" 2>/dev/null
	BED_ETCD_PID=
}

bed_link() { # I up|down
	ip -n "$BED_SW" link set "${BED_TAG}p$1" "$2"
}

bed_loss() { # I PCT
	ip netns exec "${BED_NS[$1]}" nft delete table inet xfer_fault 2>/dev/null
	[ "$2" -gt 0 ] || return 0
	ip netns exec "${BED_NS[$1]}" nft -f - <<E
table inet xfer_fault {
	chain in {
		type filter hook input priority 0; policy accept;
		numgen random mod 100 < $2 counter drop
	}
}
E
}

# packets host I dropped on purpose so far
bed_loss_count() {
	ip netns exec "${BED_NS[$1]}" nft list table inet xfer_fault 2>/dev/null |
		sed -n 's/.*counter packets \([0-9]*\) .*/\1/p'
}

bed_rate() { # I RATE: host I sends and receives at RATE (tbf at both ends of its cable)
	ip -n "${BED_NS[$1]}" link >/dev/null || return 1
	tc -n "${BED_NS[$1]}" qdisc del dev eth0 root 2>/dev/null
	tc -n "$BED_SW" qdisc del dev "${BED_TAG}p$1" root 2>/dev/null
	[ -n "$2" ] || return 0
	tc -n "${BED_NS[$1]}" qdisc add dev eth0 root tbf rate "$2" burst 64kb latency 200ms &&
	tc -n "$BED_SW" qdisc add dev "${BED_TAG}p$1" root tbf rate "$2" burst 64kb latency 200ms
}

bed_kill() { # I
	local p
	for p in $(ip netns pids "${BED_NS[$1]}" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
}

bed_down() {
	local i
	bed_etcd_stop
	for i in "${!BED_NS[@]}"; do
		bed_kill "$i"
		ip netns del "${BED_NS[i]}" 2>/dev/null
	done
	ip netns del "$BED_SW" 2>/dev/null
	[ -n "$BED_TMP" ] && rm -rf "$BED_TMP"
	BED_NS=()
}

# bed_keys PREFIX N: etcd holds at least N keys under PREFIX (asked from host 0)
bed_keys() {
	local k
	k=$(ip netns exec "${BED_NS[0]}" etcdctl --endpoints "http://${BED_IP[0]}:$BED_ETCD_PORT" \
		--command-timeout=2s get --prefix "$1" --keys-only 2>/dev/null | grep -c .)
	[ "$k" -ge "$2" ]
}

# start NAME HOST LIMIT CMD...: CMD in HOST under timeout LIMIT; its stdout,
# stderr, status and seconds in $BED_OUT/{out,err,rc,s}.NAME
start() {
	local name=$1 host=$2 limit=$3
	shift 3
	rm -f "$BED_OUT"/*."$name"
	{
		local t0=$SECONDS
		(bed_run "$host" timeout -k 2 "$limit" "$@") > "$BED_OUT/out.$name" 2> "$BED_OUT/err.$name" < /dev/null
		echo $? > "$BED_OUT/rc.$name"
		echo $((SECONDS - t0)) > "$BED_OUT/s.$name"
	} &
	pids+=($!)
}
pids=()
wait_all() { wait "${pids[@]}" 2>/dev/null; pids=(); }

# torchrun's variables for a job of N ranks, rank r on host hosts[r]
# (local ranks counted per host): launch JOB N "h0 h1 ..." CMD...
launch() {
	local job=$1 n=$2 r h
	local -a hs=($3)
	local -A seen=()
	shift 3
	for ((r = 0; r < n; r++)); do
		h=${hs[r]}
		start "$job.$r" "$h" 90 env RANK=$r WORLD_SIZE=$n LOCAL_RANK=$((seen[$h]++ + 0)) \
			TORCHELASTIC_RUN_ID="$job" "$@"
	done
}
