#!/bin/sh
# xferctl against the real module, inside the qemu guest (busybox sh), run by
# tests/kmod/run.sh in the newest kernel's boot after the module's own tests.
# Live processes (ctl_proc: an owner with two engines and a group share, a
# victim with a uid share, an opener running as an unprivileged user that
# opens both) are looked at with `xferctl -j` as root (debugfs) and as that
# user (sysfs totals); health is made unhealthy (the victim SIGKILLed while
# its region is open elsewhere; RLIMIT_MEMLOCK under the module's limit;
# /dev/xfer's mode and group) and healthy again; `check` runs, and fails
# naming the limit when max_pinned_mb is under what is pinned. Each run is
# one line, "XCTL-RUN NAME STATUS OUTPUT"; what the processes hold is in
# "XCTL-KNOWN ROLE LINE" lines, and tests/kmod/xferctl-guest.py compares
# the two on the host after the guest exits. Always exits 0: the host judges.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
ctl=/bin/xferctl proc=/bin/ctl_proc
XUID=1000 XGID=990
param=/sys/module/xfer/parameters/max_pinned_mb
st=/tmp/xctl
mkdir -p $st && chmod 1777 $st
echo "XCTL-BEGIN $(cut -d' ' -f1 /proc/uptime)"

# What a node's packages and udev do (kmod/60-xfer.rules): group xfer, an
# operator account in it, /dev/xfer 0660 group xfer. No udev here, and
# xfer_test's reload made the node anew: set it now.
cat > /etc/passwd <<EOF
root:x:0:0:root:/root:/bin/sh
op:x:$XUID:$XUID:op:/tmp:/bin/sh
EOF
cat > /etc/group <<EOF
root:x:0:
xfer:x:$XGID:op
op:x:$XUID:
EOF
chgrp xfer /dev/xfer && chmod 0660 /dev/xfer
ulimit -l unlimited
ip link set lo up 2>/dev/null
# libfabric's verbs provider reads all of /proc/kallsyms at every start
# (for ib_umem_dmabuf_get), about 2 s per process under software
# emulation; this guest has no RDMA device: let it read nothing
mount --bind /dev/null /proc/kallsyms 2>/dev/null && kallsyms_hidden=1

# x NAME [-u] ARGS...: xferctl ARGS (as the unprivileged user with -u),
# its status and stdout on one line (newlines as \036), its stderr on
# XCTL-ERR lines
x() {
	name=$1
	shift
	if [ "$1" = -u ]; then
		shift
		set -- $proc runas $XUID $XGID $ctl "$@"
	else
		set -- $ctl "$@"
	fi
	t0=$(cut -d' ' -f1 /proc/uptime)
	timeout 120 "$@" >$st/out 2>$st/err
	rc=$?
	echo "XCTL-TIME $name $t0 $(cut -d' ' -f1 /proc/uptime)"
	printf 'XCTL-RUN %s %s %s\n' "$name" "$rc" "$(tr '\n' '\036' < $st/out)"
	[ -s $st/err ] && sed "s/^/XCTL-ERR $name /" $st/err
}

# wait_for FILE TEXT: until FILE has a line starting with TEXT (30 s)
wait_for() {
	i=0
	while ! grep -q "^$2" "$1" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 300 ] || grep -q '^failed' "$1" 2>/dev/null; then
			echo "XCTL-FAIL waiting for '$2' in $1: $(cat "$1" 2>/dev/null | tail -n 3)"
			return 1
		fi
		sleep 0.1
	done
}

$proc owner $st/owner $XGID & owner=$!
$proc victim $st/victim $XUID & victim=$!
wait_for $st/owner ready && wait_for $st/victim ready
s1=$(sed -n 's/^share //p' $st/owner)
s2=$(sed -n 's/^share //p' $st/victim)
$proc runas $XUID $XGID $proc opener $st/opener $s1 $s2 & opener=$!
wait_for $st/opener ready
echo "XCTL-PIDS owner=$owner victim=$victim opener=$opener"

# root reads debugfs
x module -j module
x region -j region
x region_pid -j region pid $owner
x share -j share
x ctx -j ctx
x stat1 -j stat
kill -USR1 $owner
wait_for $st/owner "writes 1 done"
x stat2 -j stat
x stat_pid -j stat pid $owner
# `nics 0`: this guest has no RDMA NIC (the host tests check that health
# names a missing one by default)
x health -j -d health nics 0
# an unprivileged member of group xfer reads the sysfs totals
x u_module -u -j module
x u_region -u -j region
x u_share -u -j share
x u_ctx -u -j ctx
x u_stat -u -j stat

# Three problems at once (each health run costs seconds under TCG: it
# initialises libfabric): the victim dies while the opener holds its
# region (orphaned, still pinned), RLIMIT_MEMLOCK under the module's limit
# (half the guest's RAM), /dev/xfer world-writable
kill -9 $victim
wait $victim 2>/dev/null
chmod 0666 /dev/xfer
(ulimit -l 65536; x sick_health -j health nics 0)
x orphan_region -j region
x orphan_share -j share
# each put right: the region released, the limit lowered under the rlimit
# at run time, the mode as udev sets it
kill -USR2 $opener
wait_for $st/opener "released"
chmod 0660 /dev/xfer
echo 32 > $param
(ulimit -l 65536; x healed_health -j health nics 0)
x released_region -j region
x lowered_module -j module
echo 0 > $param
# the group udev would not give: the user may not open /dev/xfer
chgrp root /dev/xfer
x u_devgroup_health -u -j health nics 0
chgrp xfer /dev/xfer

# the self-test, as root and as the user; then with the module's limit
# under what the live processes hold: the module's pins fail, named
x check -j check
x u_check -u -j check module
echo 1 > $param
x check_lowered -j check module
echo 0 > $param

# the processes end cleanly: nothing stays pinned or open
kill $owner $opener
wait_for $st/owner stopped && wait_for $st/opener stopped ||
	kill -9 $owner $opener 2>/dev/null   # not to hang the guest in wait
wait $owner $opener 2>/dev/null
x end_module -j module
for f in owner victim opener; do
	sed "s/^/XCTL-KNOWN $f /" $st/$f
done
[ -n "${kallsyms_hidden:-}" ] && umount /proc/kallsyms
echo "XCTL-END $(cut -d' ' -f1 /proc/uptime)"
exit 0
