/* SPDX-License-Identifier: MIT */
/*
 * `xfer-weightsync run`: the executor on one machine. The tool forks one
 * process per trainer rank and per inference rank, relays engine addresses
 * and region descriptors between them (it is the control plane), fills each
 * trainer's shards with a seeded pattern, runs the schedule for a number of
 * steps, as a training loop would after each of its steps, and has every
 * inference rank clear its buffer before each step and check every tensor
 * it received after it (bit-exact for bf16, the fp8 reference plus a
 * rounding bound for quantised tensors).
 */
#ifndef XFER_TOOLS_WSRUN_H
#define XFER_TOOLS_WSRUN_H

#include <stdbool.h>
#include <stdint.h>

#include "xfer_weightsync.h"

struct wsrun_opts {
	const char *provider;      /* an engine provider: local, shm, ... */
	uint32_t rails;
	uint64_t watermark;        /* staging bytes per trainer; 0 = executor default */
	uint32_t window;
	uint64_t seed;
	int timeout_ms;            /* waiting on peers; 0 = 30000 */
	int kill_trainer;          /* -1, or a trainer rank to SIGKILL after kill_after_ms */
	int kill_after_ms;
	uint32_t steps;            /* 0 = 1 */
	uint32_t exec_flags;       /* XFER_WS_EXEC_* */
	bool no_bound;             /* skip the calibration (seconds): bound_s 0 */
	uint32_t threads;          /* transform threads per trainer; 0 = cores / trainers */
};

#define WSRUN_MAX_STEPS 64
#define WSRUN_MAX_CALIB 16  /* calibration streams at once (one per core) */

struct wsrun_result {
	double seconds;            /* a step: slowest trainer, first gather to last barrier;
				    * the median of the steps after the first (warm-up) one */
	double step_s[WSRUN_MAX_STEPS];       /* each step's */
	uint32_t steps;            /* steps completed */
	double gather_s, prepare_s, wait_s;   /* the last step's slowest trainer's phases */
	double trainer_cpu_s, infer_cpu_s;    /* the last step's CPU time, all ranks of each side */
	uint64_t staged;           /* bytes the trainers staged per step (the rest went direct) */
	double bound_s;            /* loopback bound (see wsrun.c) */
	double loopback_gbs;       /* measured single-stream rate the bound uses */
	double loopback_gbs_concurrent;   /* per stream, with one per core copying at once */
	double transform_gbs;      /* bf16 bytes/s quantised to fp8 by one thread (GB/s) */
	double transform_gbs_concurrent;  /* per thread, with one per core quantising */
	uint32_t threads;          /* transform threads per trainer */
	uint64_t transformed;      /* bf16 bytes quantised per step, all trainers */
	uint64_t bytes;            /* written into inference buffers, per step */
	uint64_t gathered;
	uint64_t tensors_checked;  /* over all steps */
	uint64_t mismatches;
	uint64_t stray;            /* bytes found outside every write's destination */
	uint32_t failed_ranks;     /* processes that reported an error or died */
	/* launcher mode, this rank's set-up after the rendezvous: engine,
	 * registrations, addresses and descriptors exchanged, peers added (the
	 * connections themselves are made by the first step's writes) */
	double setup_s;
	char error[256];
};

int wsrun(const struct xfer_ws_schedule *s, const struct wsrun_opts *o, struct wsrun_result *r);
/* Launcher mode: run this process's rank (l settled and joined); closes l
 * when the run ended with every rank there, else leaves it to its lease. */
struct launch;
int wsrun_rank(const struct xfer_ws_schedule *s, const struct wsrun_opts *o, struct launch *l,
	       struct wsrun_result *r);

/* Within the tool. Monotonic seconds. */
/* The seeded pattern of param's rows [row0, +rows) x
 * columns [col0, +cols), row-major in its dtype. */
void wsrun_fill_rows(const struct xfer_ws_param *p, uint32_t param, uint64_t seed, uint64_t row0,
		     uint64_t rows, uint64_t col0, uint64_t cols, void *out);
/* wscalib.c: GB/s per stream with k processes copying into k others at
 * once, as the run's writes go; bf16 GB/s per thread with k threads
 * quantising the schedule's fp8 chunks at once. 0 if it could not measure. */
double wsrun_copy_rate(const struct wsrun_opts *o, uint32_t k);
double wsrun_transform_rate(const struct xfer_ws_schedule *s, uint32_t k);

#endif
