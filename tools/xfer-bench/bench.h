/* SPDX-License-Identifier: MIT */
/*
 * xfer-bench's parts: cli.c (options), proto.c (engines and the
 * out-of-band protocol between the initiator and its targets, the target's
 * loop), tests.c (the four test families), stats.c (medians, ranges,
 * percentiles), main.c (the roles: loopback, server, client).
 */
#ifndef XFER_BENCH_H
#define XFER_BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "xfer.h"
#include "out.h"
#include "raw.h"

#define MAX_SIZES 32
#define MAX_REPS 32
#define MAX_PEERS 8
#define PORT_DEFAULT 18515
#define SINGLE_BUDGET (512ull << 20)   /* bytes moved per single-write size */
#define PAGED_BUDGET 200000            /* pages moved per paged config */
#define REGION_MIN (64ull << 20)       /* registered per process, at least */
/* The region grows to the largest size asked for, up to this: every
 * process (the initiator and each loopback target) allocates, touches and
 * registers one, so a larger one is refused rather than swapped. */
#define REGION_MAX (256ull << 20)

/* Test families, bits of opts.tests. */
enum { T_SINGLE, T_PAGED, T_IMM, T_SCATTER };
#define T_ALL ((1u << T_SINGLE) | (1u << T_PAGED) | (1u << T_IMM) | (1u << T_SCATTER))

enum { CMD_QUIT = 1, CMD_PONG_XFER, CMD_SERVE_RAW };

struct opts {
	const char *provider;
	char provider_used[64];  /* what the engine reports it opened */
	uint32_t rails;
	const char *node;
	const char *client;
	const char *devices;     /* this host's NICs, one per rail (not sent to the peer) */
	int gpu;                 /* -1: none */
	bool server, raw;
	uint16_t port;
	uint64_t sizes[MAX_SIZES];         /* single and scatter write sizes */
	int nsizes;
	bool sizes_given;
	uint64_t page_sizes[MAX_SIZES];    /* paged */
	int npage_sizes;
	uint64_t page_counts[MAX_SIZES];
	int npage_counts;
	uint64_t iters;          /* 0: from the byte budget */
	uint32_t scatter_peers;
	uint32_t tests;          /* T_* bits */
	uint64_t region;
	uint32_t reps;           /* interleaved repetitions of each measurement */
};

/* cli.c: 0 to run, else the exit status (0 after --help). */
int bench_options(int argc, char **argv, struct opts *o, struct out *out, bool *exit_now);

/* The process's output; a target (forked) prints no document of its own. */
extern struct out bench_out;
/* Report "what: xfer_strerror(err)" (JSON in -j mode) and exit(1). */
void die(const char *what, int err) __attribute__((noreturn));

/* ---- proto.c: both sides ------------------------------------------------- */

struct config_msg {
	char provider[32];
	uint32_t rails;
	uint32_t raw;
	uint64_t region;
};

struct side {
	xfer_engine *e;
	void *buf;
	xfer_mr *mr;
	uint32_t peer[MAX_PEERS];
	xfer_rmr *rmr[MAX_PEERS];
	int npeers;
	bool raw;
	struct rawfab rf;
	struct raw_mr rmr_local;
	struct raw_rmr rrmr[MAX_PEERS];
};

void wait_flag(_Atomic uint32_t *flag);
void set_flag(_Atomic uint32_t *flag);
void side_open(struct side *s, const struct opts *o, const char *prov, uint32_t rails,
	       const char *node, uint64_t region, bool raw);
void side_close(struct side *s);
void side_exchange(struct side *s, int fd);
int target_main(const struct opts *o, int fd);
void raw_cmd(int fd, uint64_t cmd, uint64_t arg);
void raw_cmd_end(int fd);

/* ---- stats.c --------------------------------------------------------------- */

/* Repetitions of one measurement, xfer and raw interleaved so the machine's
 * drift falls on both alike. */
struct reps {
	double x[MAX_REPS], raw[MAX_REPS];
	int n;
};

double median_of(const double *v, int n);
json_object *range_of(const double *v, int n);
double add_figures(json_object *row, const char *key, const struct reps *r, bool have_raw);
/* The q-quantile of v[0..n) (sorts v). */
double pct(double *v, uint64_t n, double q);

/* ---- tests.c ---------------------------------------------------------------- */

struct bench {
	struct opts *o;
	struct side s;
	int fds[MAX_PEERS];
	int nfds;
	struct out *out;
};

void test_single(struct bench *b);
void test_paged(struct bench *b);
void test_imm(struct bench *b);
void test_scatter(struct bench *b);

#endif
