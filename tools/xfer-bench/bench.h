/* SPDX-License-Identifier: MIT */
/*
 * xfer-bench's parts: cli.c (options), proto.c (engines and the
 * out-of-band protocol between the initiator and its targets, the target's
 * loop, byte checks), tests.c (single, paged, imm, scatter), apps.c (the
 * application's cases: kv, peers, first), addr.c (what an engine
 * publishes, decoded), stats.c (medians, ranges, percentiles), main.c (the
 * roles: loopback, server, client).
 */
#ifndef XFER_BENCH_H
#define XFER_BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "xfer.h"
#include "launch.h"
#include "out.h"
#include "raw.h"

#define MAX_SIZES 32
#define MAX_REPS 32
#define MAX_PEERS 16
#define PORT_DEFAULT 18515
#define SINGLE_BUDGET (512ull << 20)   /* bytes moved per single-write size */
#define PAGED_BUDGET 200000            /* pages moved per paged config */
#define REGION_MIN (64ull << 20)       /* registered per process, at least */
/* The region grows to the largest size asked for, up to this: every
 * process (the initiator and each loopback target) allocates, touches and
 * registers one, so a larger one is refused rather than swapped. */
#define REGION_MAX (256ull << 20)

/* Test families, bits of opts.tests. peers and first fork or open more
 * engines: they run when asked for. */
enum { T_SINGLE, T_PAGED, T_IMM, T_SCATTER, T_KV, T_PEERS, T_FIRST };
#define T_ALL ((1u << T_SINGLE) | (1u << T_PAGED) | (1u << T_IMM) | (1u << T_SCATTER) | \
	       (1u << T_KV))

/* How the target receives (opts.target bits): busy, its worker kept
 * awake by back-to-back traffic (and, where it waits, its thread spinning
 * on the counter); idle, as an application: quiet for --idle-gap first (its
 * worker asleep), then blocked in xfer_imm_wait per expected immediate. */
enum { TGT_BUSY = 1, TGT_IDLE = 2 };

/* Commands from the initiator to a target: struct cmd_msg, a[] below. */
enum {
	CMD_QUIT = 1,
	CMD_PONG_XFER,   /* a0 pings to answer from completion callbacks */
	CMD_SERVE_RAW,   /* a0: answer raw pings */
	CMD_EXPECT,      /* a0 imm, a1 count, a2 distinct imms (imm+i), a3 idle: wait for them */
	CMD_PONG_IDLE,   /* a0 pings: blocked in xfer_imm_wait, answer each with xfer_imm */
	CMD_CHECK,       /* a0 dst_off, a1 src_off, a2 len, a3 writer's salt: bytes landed? */
	CMD_CHECK_PAGED, /* a0 seed, a1 pages, a2 page size, a3 slots, a4 salt */
	CMD_WRITE,       /* a0 size, a1 count, a2 dst_off, a3 window, a4 imm: write to peer 0 */
	CMD_FRESH,       /* a new engine and region, exchanged again (first contact) */
};

struct cmd_msg {
	uint64_t cmd, a[7];
};

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
	uint32_t target;         /* TGT_* bits */
	uint32_t idle_gap_ms;    /* quiet time before each idle measurement */
	uint64_t kv[3];          /* kv case: layers, pages per layer, page size */
	bool verbose;            /* print the addresses each side publishes */
	struct launch_opts launch;   /* --rdzv: rank 0 the initiator, rank 1 the target */
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
	uint8_t peer_addr[XFER_ADDR_MAX];   /* the first peer's engine address */
	size_t peer_len;
};

void wait_flag(_Atomic uint32_t *flag);
void set_flag(_Atomic uint32_t *flag);
void side_open(struct side *s, const struct opts *o, const char *prov, uint32_t rails,
	       const char *node, uint64_t region, bool raw, uint32_t salt);
void side_close(struct side *s);
void side_exchange(struct side *s, int fd);
/* One exchange of engine address and region descriptor; the peer's
 * address is kept in peer_addr (len in *peer_len) when not NULL. */
void exchange_one(xfer_engine *e, xfer_mr *mr, int fd, uint32_t *peer, xfer_rmr **rmr,
		  uint8_t *peer_addr, size_t *peer_len);
int target_main(const struct opts *o, int fd, int salt, const char *node);
void raw_cmd(int fd, uint64_t cmd, uint64_t arg);
void raw_cmd_end(int fd);
/* Send a command; with reply, wait for its first answer (its status). */
int cmd_send(int fd, uint64_t cmd, const uint64_t *args, int nargs);

/* Bytes every process fills its region with: byte i of the region of the
 * process with `salt` (the initiator 0, target k k+1). A target checks
 * that what landed is the writer's pattern at the source offset, then puts
 * its own pattern back over the range. */
uint8_t pattern_byte(uint32_t salt, uint64_t i);
void pattern_fill(void *buf, uint32_t salt, uint64_t off, uint64_t len);
/* Bytes of dst that differ from the writer's pattern at src_off. */
uint64_t pattern_check(const uint8_t *dst, uint32_t salt, uint64_t src_off, uint64_t len);
/* Paged writes whose bytes can be checked: distinct destination pages
 * where there are enough, and the source page a function of the
 * destination page, so that a page written twice holds the same bytes. */
void paged_lists(uint64_t seed, uint32_t np, uint64_t slots, uint32_t *sp, uint32_t *dp);

/* Writes with an immediate each, per_dst to each of dst[0..ndst) (source
 * soff[d], destination doff[d], walking span bytes), window in flight per
 * destination; each write's latency from submit to completion. */
struct wres {
	int64_t status;
	double secs, p50_us, p99_us;
	uint64_t bytes;
};
int lat_writes(xfer_engine *e, xfer_mr *mr, xfer_rmr *const *dst, int ndst,
	       const uint64_t *soff, const uint64_t *doff, uint64_t span, uint64_t size,
	       uint64_t per_dst, uint32_t window, uint32_t imm, struct wres *res);

/* ---- addr.c --------------------------------------------------------------- */

/* The rail addresses of an engine address (the wire format of
 * docs/design.md), as libfabric writes them (fi_av_straddr) for fabric
 * engines, else in hex: a JSON array of strings. */
json_object *addr_describe(const char *prov, const char *node, const void *addr, size_t len);
/* The local address of a connected socket, in dotted form ("" if none). */
void sock_local_ip(int fd, char *buf, size_t len);

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
	uint32_t salt;       /* the initiator's pattern */
};

/* Report a failed byte check (and exit 1): xfer-bench checks what lands. */
void check_landed(struct bench *b, int k, uint64_t dst_off, uint64_t src_off, uint64_t len);

void test_single(struct bench *b);
void test_paged(struct bench *b);
void test_imm(struct bench *b);
void test_scatter(struct bench *b);
void test_kv(struct bench *b);
void test_peers(struct bench *b);
void test_first(struct bench *b);
/* tests.c, for apps.c: a row's common keys, "target" among them */
json_object *row_base(struct bench *b, const char *test, uint64_t size, const char *target);
void idle_gap(const struct opts *o);

#endif
