// SPDX-License-Identifier: MIT
/*
 * Schedule file format: "XFERWSS\0", a header of little-endian u32/u64
 * fields, then the arrays as the structs lay them out (fixed-width fields,
 * no padding: checked below), then the string table. A loaded schedule is
 * validated in full before it is returned.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ws_internal.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the schedule file format is written from little-endian hosts only"
#endif

_Static_assert(sizeof(struct xfer_ws_param) == 128, "param has padding");
_Static_assert(sizeof(struct xfer_ws_tensor) == 64, "tensor has padding");
_Static_assert(sizeof(struct xfer_ws_chunk) == 88, "chunk has padding");
_Static_assert(sizeof(struct xfer_ws_write) == 24, "write has padding");
_Static_assert(sizeof(struct xfer_ws_gather) == 40, "gather has padding");
_Static_assert(sizeof(struct xfer_ws_trainer_rank) == 56, "trainer rank has padding");
_Static_assert(sizeof(struct xfer_ws_infer_rank) == 24, "infer rank has padding");

static const char magic[8] = "XFERWSS";

struct hdr { /* the on-disk header, all fields little-endian */
	uint32_t version, align;
	uint32_t t_dp, t_pp, t_fsdp, t_ep;
	uint32_t i_dp, i_ep, i_tp, i_dtype;
	uint32_t ntrainers, ninfer, nlayers, nexperts;
	uint64_t nparams, ntensors, nchunks, nwrites, ngathers, strtab_len;
};
_Static_assert(sizeof(struct hdr) == 104, "header has padding");

struct arr {
	void **p;
	uint64_t n;
	size_t esz;
};

static void arrays(struct xfer_ws_schedule *s, struct arr *a)
{
	a[0] = (struct arr){ (void **)&s->params, s->nparams, sizeof(*s->params) };
	a[1] = (struct arr){ (void **)&s->tensors, s->ntensors, sizeof(*s->tensors) };
	a[2] = (struct arr){ (void **)&s->chunks, s->nchunks, sizeof(*s->chunks) };
	a[3] = (struct arr){ (void **)&s->writes, s->nwrites, sizeof(*s->writes) };
	a[9] = (struct arr){ (void **)&s->writes_by_chunk, s->nwrites, sizeof(*s->writes_by_chunk) };
	a[4] = (struct arr){ (void **)&s->gathers, s->ngathers, sizeof(*s->gathers) };
	a[5] = (struct arr){ (void **)&s->gathers_by_chunk, s->ngathers, sizeof(*s->gathers_by_chunk) };
	a[6] = (struct arr){ (void **)&s->trainers, s->ntrainers, sizeof(*s->trainers) };
	a[7] = (struct arr){ (void **)&s->infers, s->ninfer, sizeof(*s->infers) };
	a[8] = (struct arr){ (void **)&s->strtab, s->strtab_len, 1 };
}
#define NARR 10

XFER_EXPORT int xfer_ws_schedule_save(const struct xfer_ws_schedule *s, FILE *f)
{
	struct hdr h = {
		s->version, s->align,
		s->trainer.dp, s->trainer.pp, s->trainer.fsdp, s->trainer.ep,
		s->infer.dp, s->infer.ep, s->infer.tp, s->infer.dtype,
		s->ntrainers, s->ninfer, s->nlayers, s->nexperts,
		s->nparams, s->ntensors, s->nchunks, s->nwrites, s->ngathers, s->strtab_len,
	};
	struct arr a[NARR];

	arrays((struct xfer_ws_schedule *)s, a);
	if (fwrite(magic, sizeof(magic), 1, f) != 1 || fwrite(&h, sizeof(h), 1, f) != 1)
		return -EIO;
	for (int i = 0; i < NARR; i++)
		if (a[i].n && fwrite(*a[i].p, a[i].esz, a[i].n, f) != a[i].n)
			return -EIO;
	return fflush(f) ? -EIO : 0;
}

XFER_EXPORT int xfer_ws_schedule_load(FILE *f, struct xfer_ws_schedule **out)
{
	struct xfer_ws_schedule *s;
	struct stat st;
	struct arr a[NARR];
	uint64_t need = 0;
	char m[8], err[256];
	struct hdr h;
	int rc;

	ws_last_error(NULL);
	if (fread(m, sizeof(m), 1, f) != 1 || memcmp(m, magic, sizeof(m)) ||
	    fread(&h, sizeof(h), 1, f) != 1) {
		ws_last_error("not a schedule file (no xfer schedule header)");
		return -EINVAL;
	}
	if (h.version != XFER_WS_SCHEDULE_VERSION) {
		ws_last_error("schedule format version %u, this build reads %u", h.version,
			      XFER_WS_SCHEDULE_VERSION);
		return -EPROTO;
	}
	if (!(s = calloc(1, sizeof(*s))))
		return -ENOMEM;
	s->version = h.version, s->align = h.align;
	s->trainer = (struct xfer_ws_trainer_layout){ sizeof(s->trainer), h.t_dp, h.t_pp, h.t_fsdp, h.t_ep };
	s->infer = (struct xfer_ws_infer_layout){ sizeof(s->infer), h.i_dp, h.i_ep, h.i_tp, h.i_dtype };
	s->ntrainers = h.ntrainers, s->ninfer = h.ninfer;
	s->nlayers = h.nlayers, s->nexperts = h.nexperts;
	s->nparams = h.nparams, s->ntensors = h.ntensors, s->nchunks = h.nchunks;
	s->nwrites = h.nwrites, s->ngathers = h.ngathers, s->strtab_len = h.strtab_len;
	arrays(s, a);
	/* refuse sizes the file cannot hold before allocating anything */
	rc = -EINVAL;
	ws_last_error("array sizes larger than the file: truncated or corrupt");
	if (fstat(fileno(f), &st) || h.ntrainers > 65536 || h.ninfer > 65536)
		goto out;
	for (int i = 0; i < NARR; i++) {
		if (a[i].n > (uint64_t)st.st_size / a[i].esz)
			goto out;
		need += a[i].n * a[i].esz;
	}
	if (need > (uint64_t)st.st_size)
		goto out;
	rc = -ENOMEM;
	ws_last_error(NULL);
	for (int i = 0; i < NARR; i++)
		if (!(*a[i].p = malloc(a[i].n ? a[i].n * a[i].esz : 1)))
			goto out;
	rc = -EINVAL;
	ws_last_error("truncated or corrupt (arrays or string table)");
	for (int i = 0; i < NARR; i++)
		if (a[i].n && fread(*a[i].p, a[i].esz, a[i].n, f) != a[i].n)
			goto out;
	if (!s->strtab_len || s->strtab[s->strtab_len - 1])
		goto out;
	if ((rc = xfer_ws_schedule_validate(s, err, sizeof(err)))) {
		ws_last_error("%s", err);
		goto out;
	}
	*out = s;
	return 0;
out:
	xfer_ws_schedule_free(s);
	return rc;
}
