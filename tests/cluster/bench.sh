#!/usr/bin/env bash
# The cluster benchmark (docs/benchmarks.md): on the test bed of
# tests/cluster/bed.sh, over tcp;ofi_rxm,
#  - one weight-sync run, 4 trainers -> 2 inference ranks, across 4 hosts
#    (trainer r on host r, the inference ranks on hosts 0 and 1) against the
#    same run with every rank on one host; where the time goes (rendezvous,
#    set-up, first step, warm steps) and the ratio;
#  - a rendezvous of 64 ranks through etcd: 16 per host, against 64 on one host.
# usage: tests/cluster/bench.sh [--reps N]   (root; prints a markdown table)
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${XFER_BUILD:-build}
case $build in /*) ;; *) build=$PWD/$build ;; esac
reps=3
[ "${1:-}" = --reps ] && reps=$2
ws=$build/bin/xfer-weightsync rdzv=$build/tests/cluster/rdzv_rank
. tests/cluster/bed.sh
bed_up 4 || exit 1
bed_etcd_start || exit 1
trap bed_down EXIT

# about 180 M parameters: 0.36 GB of bf16 per step
cat > "$BED_TMP/model.json" <<'J'
{"model_type":"qwen2","hidden_size":1024,"intermediate_size":2816,"num_hidden_layers":8,
 "num_attention_heads":16,"num_key_value_heads":4,"vocab_size":32000,"tie_word_embeddings":false}
J
summary() { # JOB N: the slowest rank's phases, as table cells
	python3 - "$BED_OUT" "$1" "$2" <<'P'
import json, sys
o, job, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = []
for r in range(n):
    try:
        d.append(json.load(open("%s/out.%s.%d" % (o, job, r))))
    except Exception:
        print("rank %d failed: %s" % (r, open("%s/err.%s.%d" % (o, job, r)).read()[:300]))
        sys.exit(1)
ok = all(x["mismatches"] == 0 and x["stray_bytes"] == 0 and x["tensors_checked"] == x["writes"] * x["steps"] for x in d)
print("%.2f %.2f %.3f %.3f %.2f %s" % (max(x["join_s"] for x in d), max(x["setup_s"] for x in d),
      d[0]["first_step_s"], d[0]["seconds"], d[0]["bytes"] / d[0]["seconds"] / 1e9, "yes" if ok else "NO"))
P
}
echo "| layout | dtype | rendezvous s | set-up s | first step s | warm step s | GB/s | every tensor checked |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for rep in $(seq "$reps"); do
	for dt in bf16 fp8; do
		for lay in "4 hosts:0 1 2 3 0 1" "1 host:0 0 0 0 0 0"; do
			job=b$rep$dt${lay%%:*}
			job=${job// /}
			launch "$job" 6 "${lay#*:}" "$ws" run -j -p 'tcp;ofi_rxm' --model "$BED_TMP/model.json" \
				--trainer fsdp=4 --inference tp=1,dp=2 --steps 6 --dtype $dt --rdzv "$BED_ETCD"
			wait_all
			set -- $(summary "$job" 6)
			echo "| ${lay%%:*} | $dt | $1 | $2 | $3 | $4 | $5 | $6 |"
		done
	done
done
echo
echo "| rendezvous of 64 ranks | all ready (s), slowest rank |"
echo "| --- | --- |"
for rep in $(seq "$reps"); do
	for lay in 4 1; do
		for ((r = 0; r < 64; r++)); do
			start "rz$rep$lay.$r" $((r % lay)) 60 "$rdzv" "$BED_ETCD" "rz$rep$lay" $r 64 30000 10
		done
		wait_all
		[ $lay = 1 ] && where="1 host, 64 ranks" || where="$lay hosts, $((64 / lay)) ranks each"
		echo "| $where | $(cat "$BED_OUT"/out.rz$rep$lay.* | python3 -c 'import json,sys; print("%.2f" % max(json.loads(l)["ready_s"] for l in sys.stdin))') |"
	done
done
