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

#endif
