/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "xt_target.h"

static bool region_ok(const uint8_t *buf, uint64_t len, const struct xt_verify_req *r,
		      bool report)
{
	uint8_t *mask = calloc(1, len);
	bool ok = true;

	if (!mask)
		return false;
	for (uint32_t i = 0; i < r->num_segs && ok; i++) {
		const struct xt_seg *s = &r->segs[i];
		int64_t bad = xt_verify(buf + s->dst_off, s->len, s->seed, s->start);

		if (bad >= 0) {
			if (report)
				fprintf(stderr, "target: segment %u (off %llu len %llu) differs at +%lld\n",
					i, (unsigned long long)s->dst_off, (unsigned long long)s->len,
					(long long)bad);
			ok = false;
		}
		memset(mask + s->dst_off, 1, s->len);
	}
	for (uint64_t i = 0; i < len && ok; i++) {
		if (!mask[i] && buf[i]) {
			if (report)
				fprintf(stderr, "target: byte %llu outside the written ranges changed\n",
					(unsigned long long)i);
			ok = false;
		}
	}
	free(mask);
	return ok;
}

int xt_target_main(int fd, void *argp)
{
	struct xt_target_arg *a = argp;
	struct xt_verify_req *req = malloc(sizeof(*req));
	xfer_engine *e = NULL;
	xfer_mr *mr = NULL;
	uint8_t *buf;
	uint32_t peer;
	int failures = 0;

	buf = xt_alloc(a->region_len);
	if (!req || !buf || xt_engine(a->prov, a->rails, 3000, &e))
		return 2;
	if (xt_connect(e, fd, &peer) ||
	    xfer_mr_reg(e, buf, a->region_len, NULL, XFER_MR_REMOTE_WRITE, &mr) ||
	    xt_send_mr(fd, mr))
		return 3;
	for (;;) {
		ssize_t n = xt_recv(fd, req, sizeof(*req));
		int32_t verdict = 0;

		if (n < (ssize_t)offsetof(struct xt_verify_req, segs) || req->quit)
			break;
		if (req->imm_count) {
			int ret = xfer_imm_wait(e, req->imm, req->imm_count, 5000);

			if (ret) {
				fprintf(stderr, "target: imm %u x%u: %s\n", req->imm, req->imm_count,
					xfer_strerror(ret));
				verdict = -1;
			}
			/* After the immediate, the data must already be there. */
			if (!verdict && !region_ok(buf, a->region_len, req, true))
				verdict = -1;
		} else {
			uint64_t t0 = xt_now_us();

			while (!region_ok(buf, a->region_len, req, false)) {
				if (xt_now_us() - t0 > 3000000) {
					region_ok(buf, a->region_len, req, true);
					verdict = -1;
					break;
				}
				usleep(1000);
			}
		}
		if (verdict)
			failures++;
		for (uint32_t i = 0; i < req->num_segs; i++)
			memset(buf + req->segs[i].dst_off, 0, req->segs[i].len);
		if (xt_send(fd, &verdict, sizeof(verdict)))
			break;
	}
	xfer_mr_dereg(mr);
	xfer_engine_destroy(e);
	free(buf);
	free(req);
	return failures ? 1 : 0;
}

int xt_target_verify(int fd, const struct xt_verify_req *req)
{
	int32_t verdict = -1;
	size_t len = offsetof(struct xt_verify_req, segs) + req->num_segs * sizeof(struct xt_seg);

	if (xt_send(fd, req, len))
		return -EIO;
	if (xt_recv(fd, &verdict, sizeof(verdict)) != sizeof(verdict))
		return -EIO;
	return verdict;
}

int xt_target_quit(int fd)
{
	struct xt_verify_req q = { .quit = 1 };

	return xt_send(fd, &q, offsetof(struct xt_verify_req, segs));
}

int xt_target_end(struct xt_peer *t)
{
	if (t->pid <= 0)
		return 0;
	xt_target_quit(t->fd);
	return xt_reap(t);
}

int xt_link_open(struct xt_link *l, const struct xt_target_arg *ta, uint32_t timeout_ms,
		 void *buf, uint64_t len, const char **step)
{
	int ret;

	l->t.pid = -1;
	if ((ret = xt_spawn(&l->t, xt_target_main, (void *)ta))) {
		*step = "xt_spawn";
	} else if ((ret = xt_engine(ta->prov, ta->rails, timeout_ms, &l->e))) {
		*step = "xt_engine";
	} else if ((ret = xt_connect(l->e, l->t.fd, &l->peer))) {
		*step = "xt_connect";
	} else if ((ret = xfer_mr_reg(l->e, buf, len, NULL, 0, &l->src))) {
		*step = "xfer_mr_reg";
	} else if ((ret = xt_recv_rmr(l->e, l->peer, l->t.fd, &l->dst))) {
		*step = "xt_recv_rmr";
	}
	return ret;
}

int xt_link_close(struct xt_link *l)
{
	int status = xt_target_end(&l->t);

	xfer_rmr_free(l->dst);
	if (l->e) {
		xfer_mr_dereg(l->src);
		xfer_engine_destroy(l->e);
	}
	return status;
}
