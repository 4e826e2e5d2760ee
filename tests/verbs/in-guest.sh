#!/bin/sh
# Runs inside the qemu guest (busybox sh, see tests/vm/guest.sh): brings up
# soft-RoCE on two dummy netdevs (rxe0, rxe1), then runs every program named
# in /verbs/list ("name command...") between markers the host-side
# tests/verbs/run.sh turns into TAP. Always exits 0: the host judges.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
ulimit -l unlimited 2>/dev/null
# libibverbs dlopens providers by bare name: no ld.so.cache in the guest
for d in /usr/lib/*/libibverbs /usr/lib/libibverbs; do
	[ -d "$d" ] && export LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
done
ip link set lo up
i=0
for n in 0 1; do
	ip link add dummy$n type dummy 2>/dev/null
	ip addr add 192.0.2.$((n + 1))/24 dev dummy$n
	ip link set dummy$n up
	rdma link add rxe$n type rxe netdev dummy$n || echo "XV-SETUP-FAIL rdma link add rxe$n"
done
for n in 0 1; do
	state=$(cat /sys/class/infiniband/rxe$n/ports/1/state 2>/dev/null)
	echo "XV-DEV rxe$n $state"
done
XV_CPUSTAT=$(cat /verbs/cpustat 2>/dev/null)
export XFER_TEST_PROVIDERS=verbs XFER_TEST_DEVICES=rxe0,rxe1
while read -r name cmd; do
	[ -n "$name" ] || continue
	echo "XV-BEGIN $name"
	[ -n "$XV_CPUSTAT" ] && echo "XV-CPU0 $(head -n1 /proc/stat)"
	start=$(cut -d' ' -f1 /proc/uptime)
	sh -c "$cmd" </dev/null 2>&1
	rc=$?
	end=$(cut -d' ' -f1 /proc/uptime)
	[ -n "$XV_CPUSTAT" ] && echo "XV-CPU1 $(head -n1 /proc/stat)"
	if [ -n "$XV_CPUSTAT" ]; then   # rxe's error/retry counters, cumulative
		for f in /sys/class/infiniband/rxe0/ports/1/hw_counters/*; do
			v=$(cat "$f"); [ "$v" != 0 ] && printf '%s=%s ' "${f##*/}" "$v"
		done
		echo
	fi
	echo "XV-END $name $rc $start $end"
done < /verbs/list
exit 0
