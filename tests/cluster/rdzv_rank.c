// SPDX-License-Identifier: MIT
/*
 * One rank of a rendezvous, as the cluster test bed runs it on each "host":
 *   rdzv_rank URL JOB RANK WORLD [TIMEOUT_MS [LEASE_S]]
 * opens the store, exchanges a blob ("rank R host H pad..." of 64 to 4096
 * bytes, its length and filler picked from R), checks every other rank's
 * blob byte for byte, passes a barrier and closes. Prints one JSON line
 * (ready_s: from start to every blob held and checked; all_s: to the end
 * of close) and exits 0; on an error prints {"error": ...} with the
 * store's text and exits 1; a blob that is not what its rank sends: exit 2.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "xfer_rdzv.h"

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* rank r's blob: a text head, then bytes derived from r and their index */
static size_t blob_of(unsigned r, const char *host, unsigned char *b, size_t cap)
{
	size_t len = 64 + (r * 2654435761u) % (cap - 64);
	int n = snprintf((char *)b, len, "rank %u host %s", r, host);

	for (size_t i = (size_t)n + 1; i < len; i++)
		b[i] = (unsigned char)(r * 131 + i * 7);
	return len;
}

/* the store's error text as a JSON string's body */
static void put_text(const char *s)
{
	for (; s && *s; s++)
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
}

int main(int argc, char **argv)
{
	unsigned char mine[4096], want[4096];
	const struct xfer_rdzv_blob *all;
	char host[64] = "?", other[64];
	xfer_rdzv *r = NULL;
	double t0 = now_s(), ready;
	int rc;

	if (argc < 5 || argc > 7) {
		fprintf(stderr, "usage: %s URL JOB RANK WORLD [TIMEOUT_MS [LEASE_S]]\n", argv[0]);
		return 64;
	}
	struct xfer_rdzv_attr a = { .size = sizeof(a), .url = argv[1], .job = argv[2],
				    .rank = (uint32_t)atoi(argv[3]), .world_size = (uint32_t)atoi(argv[4]),
				    .timeout_ms = argc > 5 ? (uint32_t)atoi(argv[5]) : 0,
				    .lease_ttl_s = argc > 6 ? (uint32_t)atoi(argv[6]) : 0 };

	gethostname(host, sizeof(host) - 1);
	size_t len = blob_of(a.rank, host, mine, sizeof(mine));

	rc = xfer_rdzv_open(&a, &r);
	if (rc) {
		printf("{\"rank\": %u, \"stage\": \"open\", \"errno\": %d, \"s\": %.3f, \"error\": \"",
		       a.rank, -rc, now_s() - t0);
		put_text(xfer_rdzv_last_error(NULL));
		printf("\"}\n");
		return 1;
	}
	rc = xfer_rdzv_exchange(r, "blob", mine, len, &all);
	if (rc)
		goto fail;
	for (unsigned i = 0; i < a.world_size; i++) {
		/* the sender's host name is in its text; the rest follows from i */
		if (sscanf((const char *)all[i].data, "rank %*u host %63s", other) != 1 ||
		    all[i].len != blob_of(i, other, want, sizeof(want)) ||
		    memcmp(all[i].data, want, all[i].len)) {
			printf("{\"rank\": %u, \"error\": \"rank %u's blob (%zu bytes) is not what it "
			       "sent\"}\n", a.rank, i, all[i].len);
			xfer_rdzv_close(r);
			return 2;
		}
	}
	ready = now_s() - t0;
	rc = xfer_rdzv_barrier(r, "end");
	if (rc)
		goto fail;
	rc = xfer_rdzv_close(r);
	r = NULL;
	if (rc)
		goto fail;
	printf("{\"rank\": %u, \"host\": \"%s\", \"ready_s\": %.4f, \"all_s\": %.4f}\n", a.rank, host,
	       ready, now_s() - t0);
	return 0;
fail:
	printf("{\"rank\": %u, \"errno\": %d, \"s\": %.3f, \"error\": \"", a.rank, -rc,
	       now_s() - t0);
	put_text(xfer_rdzv_last_error(r));
	printf("\"}\n");
	if (r)
		xfer_rdzv_close(r);
	return 1;
}
