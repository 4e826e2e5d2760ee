#!/usr/bin/env bash
# Turns the serial log of `tests/verbs/run.sh --bench` into a markdown table:
# ib_write_bw (perftest) against xfer's verbs backend (bench_verbs), median and
# range over the repetitions, and the ratio of the medians.
# usage: tests/verbs/bench-report.sh SERIAL_LOG [KVER]
set -euo pipefail
log=$1 kver=${2:-?}
awk -v kver="$kver" '
	function median(arr, n,    i, j, t, a) {
		for (i = 1; i <= n; i++) a[i] = arr[i]
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		lo = a[1]; hi = a[n]
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	/^XV-BEGIN / { split($2, f, "_"); kind = f[1]; size = f[2]; next }
	# XV-CPU lines carry the first line of /proc/stat: $3.. are user nice system idle iowait ...
	/^XV-CPU0 / { c0 = 0; for (i = 3; i <= NF; i++) c0 += $i; i0 = $6 + $7; next }
	/^XV-CPU1 / { c1 = 0; for (i = 3; i <= NF; i++) c1 += $i; i1 = $6 + $7
		if (c1 > c0) { busy[kind] += 1 - (i1 - i0) / (c1 - c0); nbusy[kind]++ } next }
	/^XV-END / {
		# paired ratio per repetition: each xfer run against the perftest run
		# just before it, which saw about the same machine
		if (kind == "perf") { lastp[size] = lastbw; lastr[size] = lastrate }
		if (kind == "xfer" && lastp[size] > 0) { pr[size, ++npr[size]] = xbw["s" size, xn["s" size]] / lastp[size] }
		if (kind == "xferpaged" && lastr[size] > 0) { ppr[++nppr] = xrate["p" size, xn["p" size]] / lastr[size] }
		kind = ""; next
	}
	kind == "perf" && $1 == size && NF >= 5 && $2 ~ /^[0-9]+$/ {
		pn[size]++; pbw[size, pn[size]] = $4; prate[size, pn[size]] = $5 * 1e6; lastbw = $4; lastrate = $5 * 1e6
	}
	(kind == "xfer" || kind == "xferpaged" || kind == "xferspan") && /^RESULT / {
		for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		k = kind == "xfer" ? "s" size : kind == "xferspan" ? "w" size : "p" size
		xn[k]++; xbw[k, xn[k]] = v["MiBps"]; xrate[k, xn[k]] = v["Mops"] * 1e6
	}
	END {
		printf "| size | ib_write_bw MiB/s median (range) | xfer verbs MiB/s median (range) | ratio | n |\n"
		printf "| ---: | ---: | ---: | ---: | ---: |\n"
		nsz = split("4096 65536 1048576", sizes, " ")
		for (s = 1; s <= nsz; s++) {
			z = sizes[s]; k = "s" z
			if (!pn[z] || !xn[k]) continue
			for (i = 1; i <= pn[z]; i++) t1[i] = pbw[z, i]
			pm = median(t1, pn[z]); plo = lo; phi = hi
			for (i = 1; i <= xn[k]; i++) t2[i] = xbw[k, i]
			xm = median(t2, xn[k]); xlo = lo; xhi = hi
			printf "| %d | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.2fx | %d/%d |\n", z, pm, plo, phi, xm, xlo, xhi, pm ? xm / pm : 0, pn[z], xn[k]
			k = "w" z
			if (xn[k]) {
				for (i = 1; i <= xn[k]; i++) t2[i] = xbw[k, i]
				xm = median(t2, xn[k]); xlo = lo; xhi = hi
				printf "| %d, 32 MiB span | (as above) | %.2f (%.2f-%.2f) | %.2fx | %d/%d |\n", z, xm, xlo, xhi, pm ? xm / pm : 0, pn[z], xn[k]
			}
		}
		printf "\npaired ratios (each xfer run / the ib_write_bw run just before it), median (range):"
		for (s = 1; s <= nsz; s++) {
			z = sizes[s]
			if (!npr[z]) continue
			for (i = 1; i <= npr[z]; i++) t3[i] = pr[z, i]
			m = median(t3, npr[z])
			printf " %d B %.2fx (%.2f-%.2f);", z, m, lo, hi
		}
		printf "\n"
		k = "p4096"
		if (pn[4096] && xn[k]) {
			for (i = 1; i <= pn[4096]; i++) t1[i] = prate[4096, i]
			pm = median(t1, pn[4096]); plo = lo; phi = hi
			for (i = 1; i <= xn[k]; i++) t2[i] = xrate[k, i]
			xm = median(t2, xn[k]); xlo = lo; xhi = hi
			printf "\n| 4 KiB writes/s | ib_write_bw -s 4096 median (range) | xfer paged 4 KiB median (range) | ratio | n |\n"
			printf "| --- | ---: | ---: | ---: | ---: |\n"
			printf "| rate | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2fx | %d/%d |\n", pm, plo, phi, xm, xlo, xhi, pm ? xm / pm : 0, pn[4096], xn[k]
			if (nppr) {
				for (i = 1; i <= nppr; i++) t3[i] = ppr[i]
				m = median(t3, nppr)
				printf "\npaired ratio (each paged run / the ib_write_bw -s 4096 run of its repetition), median (range): %.2fx (%.2f-%.2f)\n", m, lo, hi
			}
		}
		if (nbusy["perf"] && nbusy["xfer"])
			printf "\nguest CPU busy (2 vCPUs, mean over runs): ib_write_bw %.0f%%, xfer single %.0f%%%s\n", 100 * busy["perf"] / nbusy["perf"], 100 * busy["xfer"] / nbusy["xfer"], nbusy["xferpaged"] ? sprintf(", xfer paged %.0f%%", 100 * busy["xferpaged"] / nbusy["xferpaged"]) : ""
		printf "\nguest kernel %s, qemu TCG, rdma_rxe on dummy netdevs\n", kver
	}
' "$log"
