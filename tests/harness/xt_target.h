/* SPDX-License-Identifier: MIT */
/*
 * A target process for integration tests: it registers a zeroed region,
 * hands its descriptor to the initiator, then serves verification requests:
 * "wait for N arrivals of imm (if any), then check that these segments hold
 * these patterns and that every other byte of the region is still zero".
 * The verified segments are zeroed again for the next request.
 */
#ifndef XT_TARGET_H
#define XT_TARGET_H

#include "xt.h"

struct xt_seg {
	uint64_t dst_off, len, seed, start;
};

#define XT_MAX_SEGS 4096

struct xt_verify_req {
	uint32_t num_segs;
	uint32_t imm;
	uint32_t imm_count;       /* 0: no immediate expected, poll the bytes */
	uint32_t quit;
	struct xt_seg segs[XT_MAX_SEGS];
};

struct xt_target_arg {
	const char *prov;
	uint32_t rails;
	uint64_t region_len;
};

/* The child's main: returns 0 when every request verified. */
int xt_target_main(int fd, void *arg);

/* Initiator side: send a request and read the verdict (0, or -1 = mismatch). */
int xt_target_verify(int fd, const struct xt_verify_req *req);
int xt_target_quit(int fd);
/* Quit target process t and reap it: its exit status, 0 when every request
 * it got verified; 0 too when none was spawned (t->pid <= 0). */
int xt_target_end(struct xt_peer *t);

/* An initiator joined to one target process: an engine on the target's
 * provider and rails, the target as its peer, a source region registered
 * and the target's region imported. */
struct xt_link {
	struct xt_peer t;        /* the target process; t.fd: its socket */
	xfer_engine *e;
	uint32_t peer;
	xfer_mr *src;
	xfer_rmr *dst;
};

/* Spawn the target for *ta, open an engine (peer timeout timeout_ms) and
 * connect it, register the len bytes at buf as src, import the target's
 * region as dst. 0, or the failing step's error with *step naming it; what
 * was opened stays in l for xt_link_close. (In a fixture: XT_LINK_OPEN.) */
int xt_link_open(struct xt_link *l, const struct xt_target_arg *ta, uint32_t timeout_ms,
		 void *buf, uint64_t len, const char **step);
/* xt_target_end, then free dst and, while the engine is there (a test that
 * destroys it itself sets e to NULL), deregister src and destroy the
 * engine. The target's exit status. */
int xt_link_close(struct xt_link *l);

#endif
