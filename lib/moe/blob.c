/* SPDX-License-Identifier: MIT */
/*
 * The blob a rank gives every other rank out of band, and connecting the
 * group from everyone's blobs.
 *
 * Format (little-endian): "XMoE" magic, version, then the attributes that
 * must agree (so that ranks built differently refuse each other instead of
 * writing past each other's buffers) and the rank, then length-prefixed:
 * the engine address and the descriptors of the receive regions (records,
 * combine records, and with prefill the count rows).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ctx.h"
#include "le.h"

#define BLOB_MAGIC 0x456f4d58u   /* "XMoE" */
#define BLOB_VERSION 1u
#define BLOB_WORDS 11u           /* u32 fields after the magic */
#define BLOB_PARTS 4u            /* address, recv, back, rows */

static void attr_words(const struct xfer_moe *m, uint32_t w[BLOB_WORDS])
{
	const struct xfer_moe_attr *a = &m->a;
	uint32_t v[BLOB_WORDS] = { BLOB_VERSION, a->world_size, a->rank, a->num_experts, a->top_k,
				   a->hidden, a->max_tokens, a->dispatch_dtype, a->combine_dtype,
				   a->flags, a->imm_base };

	memcpy(w, v, sizeof(v));
}

static const char *const word_name[BLOB_WORDS] = {
	"blob version", "world size", "rank", "experts", "top-k", "hidden size", "max tokens",
	"dispatch dtype", "combine dtype", "flags", "immediate base",
};

XFER_EXPORT int xfer_moe_blob(xfer_moe *m, void *buf, size_t *len)
{
	uint8_t part[BLOB_PARTS][XFER_ADDR_MAX > XFER_DESC_MAX ? XFER_ADDR_MAX : XFER_DESC_MAX];
	size_t plen[BLOB_PARTS] = { 0 }, need = 4 + 4 * BLOB_WORDS;
	uint32_t w[BLOB_WORDS];
	uint8_t *p = buf;
	int ret;

	moe_error_clear();
	if (!m || !len || (!buf && *len)) {
		moe_error("%s is NULL", !m ? "the context" : !len ? "len" : "buf");
		return -EINVAL;
	}
	plen[0] = sizeof(part[0]);
	ret = xfer_engine_address(m->e, part[0], &plen[0]);
	for (uint32_t i = 1; !ret && i < BLOB_PARTS; i++) {
		xfer_mr *mr = i == 1 ? m->mr_recv : i == 2 ? m->mr_back : m->mr_rows_in;

		plen[i] = sizeof(part[i]);
		if (mr)
			ret = xfer_mr_descriptor(mr, part[i], &plen[i]);
		else
			plen[i] = 0;
	}
	if (ret) {
		moe_error("the engine's address or a region's descriptor: %s", xfer_strerror(ret));
		return ret;
	}
	for (uint32_t i = 0; i < BLOB_PARTS; i++)
		need += 4 + plen[i];
	if (*len < need) {
		*len = need;
		moe_error("the blob needs %zu bytes", need);
		return -ENOSPC;
	}
	attr_words(m, w);
	xfer_put_le32(p, BLOB_MAGIC);
	p += 4;
	for (uint32_t i = 0; i < BLOB_WORDS; i++, p += 4)
		xfer_put_le32(p, w[i]);
	for (uint32_t i = 0; i < BLOB_PARTS; i++) {
		xfer_put_le32(p, (uint32_t)plen[i]);
		memcpy(p + 4, part[i], plen[i]);
		p += 4 + plen[i];
	}
	*len = need;
	return 0;
}

struct blob {
	const uint8_t *part[BLOB_PARTS];
	uint32_t plen[BLOB_PARTS];
};

/* Check rank r's blob against ours; every length is bounded before use. */
static int blob_parse(const struct xfer_moe *m, uint32_t r, const uint8_t *b, size_t len,
		      struct blob *out)
{
	uint32_t w[BLOB_WORDS];
	size_t at = 4 + 4 * BLOB_WORDS;

	if (!b || len < at || xfer_get_le32(b) != BLOB_MAGIC) {
		moe_error("rank %u's blob is %s", r, !b ? "NULL" : len < at ? "truncated" :
			  "not an MoE blob (bad magic)");
		return -EINVAL;
	}
	attr_words(m, w);
	w[2] = r;   /* the rank it must say it is */
	for (uint32_t i = 0; i < BLOB_WORDS; i++) {
		uint32_t v = xfer_get_le32(b + 4 + 4 * i);

		if (v != w[i]) {
			moe_error("rank %u's blob disagrees: %s is %u, this rank has %u", r,
				  word_name[i], v, w[i]);
			return -EINVAL;
		}
	}
	for (uint32_t i = 0; i < BLOB_PARTS; i++) {
		uint32_t n;

		if (len - at < 4) {
			moe_error("rank %u's blob is truncated", r);
			return -EINVAL;
		}
		n = xfer_get_le32(b + at);
		at += 4;
		if (n > len - at || n > (i ? XFER_DESC_MAX : XFER_ADDR_MAX) ||
		    (!n && (i < 3 || m->prefill))) {
			moe_error("rank %u's blob is truncated or has a bad part length (%u)", r, n);
			return -EINVAL;
		}
		out->part[i] = b + at;
		out->plen[i] = n;
		at += n;
	}
	if (at != len) {
		moe_error("rank %u's blob has %zu bytes past its end", r, len - at);
		return -EINVAL;
	}
	return 0;
}

/* A firing's status (worker thread): keep the first error for the next call. */
static void vs_done(void *ctx, int status)
{
	struct moe_vs *vs = ctx;
	int none = 0;

	if (status < 0)
		atomic_compare_exchange_strong(&vs->err, &none, status);
}

static int vs_add(struct xfer_moe *m, struct moe_vs *vs, xfer_mr *src, xfer_rmr **dst)
{
	xfer_rmr *dsts[XFER_MOE_MAX_RANKS];
	struct xfer_vscatter_attr a = { .size = sizeof(a) };
	uint32_t n = 0;
	int ret;

	/* Row i is rank me + 1 + i (mod R): the worker posts in row order,
	 * and if every rank started with rank 0, all of them would queue on
	 * rank 0's NIC first (the simulator's --rank-order shows the cost). */
	for (uint32_t i = 1; i < m->R; i++)
		dsts[n++] = dst[(m->me + i) % m->R];
	a.flags = XFER_VSCATTER_F_KICK;   /* this thread plays the GPU: it can kick */
	a.word = &vs->word;
	a.src = src;
	a.dsts = dsts;
	a.num_dsts = n;
	a.num_tables = 1;
	a.tables = vs->rows;
	a.done_word = &vs->done_word;
	a.done.fn = vs_done;
	a.done.ctx = vs;
	ret = xfer_vscatter_add(m->e, &a, &vs->w);
	if (ret)
		moe_error("preparing a variable-length scatter to %u ranks: %s", n,
			  xfer_strerror(ret));
	return ret;
}

XFER_EXPORT int xfer_moe_connect(xfer_moe *m, const void *const *blobs, const size_t *lens,
				 int timeout_ms)
{
	struct blob *bl;
	uint32_t *peers = NULL, n = 0;
	int ret = 0;

	moe_error_clear();
	if (!m || !blobs || !lens) {
		moe_error("%s is NULL", !m ? "the context" : !blobs ? "blobs" : "lens");
		return -EINVAL;
	}
	if (m->connected) {
		moe_error("the context is already connected");
		return -EALREADY;
	}
	if (m->failed) {
		moe_error("an earlier connect failed half way (%s); destroy the context",
			  xfer_strerror(m->failed));
		return m->failed;
	}
	bl = calloc(m->R, sizeof(*bl));
	peers = calloc(m->R, sizeof(*peers));
	if (!bl || !peers) {
		free(bl);
		free(peers);
		moe_error("out of memory");
		return -ENOMEM;
	}
	/* Every blob is checked before anything is done with any: a bad one
	 * leaves the context as it was, to be connected again. */
	for (uint32_t r = 0; r < m->R && !ret; r++)
		ret = blob_parse(m, r, blobs[r], lens[r], &bl[r]);
	if (ret) {
		free(bl);
		free(peers);
		return ret;
	}
	for (uint32_t r = 0; r < m->R && !ret; r++) {
		if (r == m->me)
			continue;
		ret = xfer_engine_add_peer(m->e, bl[r].part[0], bl[r].plen[0], &m->peer[r]);
		if (ret) {
			moe_error("rank %u's engine address: %s", r, xfer_strerror(ret));
			break;
		}
		peers[n++] = m->peer[r];
		ret = xfer_rmr_import(m->e, m->peer[r], bl[r].part[1], bl[r].plen[1], &m->rmr_recv[r]);
		if (!ret)
			ret = xfer_rmr_import(m->e, m->peer[r], bl[r].part[2], bl[r].plen[2],
					      &m->rmr_back[r]);
		if (!ret && m->prefill)
			ret = xfer_rmr_import(m->e, m->peer[r], bl[r].part[3], bl[r].plen[3],
					      &m->rmr_rows[r]);
		if (ret)
			moe_error("rank %u's region descriptors: %s", r, xfer_strerror(ret));
	}
	for (uint32_t i = 0; i < XFER_MOE_SLOTS && !ret && m->R > 1; i++) {
		struct moe_slot *s = &m->slot[i];

		ret = vs_add(m, &s->dispatch, m->mr_send, m->rmr_recv);
		if (!ret)
			ret = vs_add(m, &s->combine, m->mr_out, m->rmr_back);
		if (!ret && m->prefill)
			ret = vs_add(m, &s->counts, m->mr_rows_own, m->rmr_rows);
	}
	if (!ret && n) {
		ret = xfer_engine_connect(m->e, peers, n, timeout_ms);
		if (ret) {
			for (uint32_t r = 0; r < m->R; r++)
				if (r != m->me && xfer_peer_status(m->e, m->peer[r])) {
					moe_error("rank %u cannot be reached: %s", r,
						  xfer_strerror(xfer_peer_status(m->e, m->peer[r])));
					break;
				}
		}
	}
	free(bl);
	free(peers);
	if (ret) {
		/* peers and scatters half made: the context cannot be retried */
		if (!*xfer_moe_last_error())
			moe_error("connecting: %s", xfer_strerror(ret));
		m->failed = ret;
		return ret;
	}
	m->connected = true;
	return 0;
}
