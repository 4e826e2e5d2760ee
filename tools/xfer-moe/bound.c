/* SPDX-License-Identifier: MIT */
/*
 * The loopback bound: the least time a layer can take on this machine if
 * copying bytes were all it did. On one host every byte the design moves
 * is copied by a CPU, and with the `local` provider by the process that
 * owns the data (process_vm_writev from the sender's worker). So per rank,
 * per layer, its process copies:
 *   dispatch: pack        its records into the send blocks (selections x record)
 *             transfer    the records and block headers it writes into the
 *                         other ranks (prefill: the count rows instead of headers)
 *             unpack      the rows it received: token, scales, source header
 *   combine:  pack        y's rows into combine records (received x 2H)
 *             transfer    the combine records it writes back into other ranks
 *             reduce      the combine records it reads (selections x 2H): read,
 *                         not copied, so at the rate one process reads at
 * The bound of a phase is a rank's bytes, averaged over the ranks, over the
 * rate one process copies at while R processes copy at once (moe_rates(R);
 * the reduce's bytes at the rate they read at): that is all the phase's bytes over what the machine
 * copies when every rank copies, the least time the phase can take when
 * the ranks share the cores (every rank's phase spans the whole phase:
 * each waits for all the others). The busiest rank's bytes over the same
 * rate are reported beside it (bound_busiest_*): with uniform routing the
 * two are close.
 * A record a rank sends itself is packed, unpacked and reduced, but does
 * not cross processes: it counts in every term but transfer.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "moe.h"

void moe_count_bytes(const struct xfer_moe_layout *l, const int32_t *const *topk,
		     struct moe_bytes *per_rank)
{
	uint32_t R = l->world_size, L = l->local_experts, K = l->top_k;
	uint64_t *to = calloc((size_t)R * R, sizeof(*to));   /* to[s * R + d]: records s -> d */
	uint64_t row = l->token_bytes + 4ull * l->scales + sizeof(struct xfer_moe_rec_hdr);
	uint64_t hdr = (l->flags & XFER_MOE_F_PREFILL) ? 4ull * l->num_experts : l->block_hdr_bytes;

	memset(per_rank, 0, (size_t)R * sizeof(*per_rank));
	if (!to)
		return;
	for (uint32_t s = 0; s < R; s++)
		for (uint64_t i = 0; i < (uint64_t)l->max_tokens * K; i++)
			if (topk[s][i] >= 0)
				to[(uint64_t)s * R + (uint32_t)topk[s][i] / L]++;
	for (uint32_t r = 0; r < R; r++) {
		struct moe_bytes *b = &per_rank[r];
		uint64_t out_recs = 0, in_recs = 0, back = 0;

		for (uint32_t d = 0; d < R; d++) {
			b->selections += to[(uint64_t)r * R + d];
			b->received += to[(uint64_t)d * R + r];
			if (d != r) {
				out_recs += to[(uint64_t)r * R + d];
				in_recs += to[(uint64_t)d * R + r];
			}
		}
		back = in_recs;   /* combine records go back to where records came from */
		b->pack = b->selections * l->record_bytes;
		b->dispatch_tx = out_recs * l->record_bytes + (R - 1ull) * hdr;
		b->unpack = b->received * row;
		b->combine_pack = b->received * l->combine_bytes;
		b->combine_tx = back * l->combine_bytes;
		b->reduce = b->selections * l->combine_bytes;
	}
	free(to);
}

#define RATE_MOVED (256ull << 20)   /* at least this much per process per round */
#define RATE_ROUNDS 3   /* the fastest round: a bound takes the best the machine showed */

/* A copier moves a 64 MiB buffer per pass, as two threads of 32 MiB
 * halves: a rank has two threads that copy (the caller packs, unpacks and
 * reduces; the engine's worker writes into the peers), and on a host
 * whose cores other work shares, two threads get twice one's share. */
struct half {
	uint8_t *src, *dst;
	size_t len;
	uint64_t passes;
	bool reads;
	uint64_t sum;
};

static void *half_passes(void *arg)
{
	struct half *h = arg;

	for (uint64_t p = 0; p < h->passes; p++) {
		h->src[p % h->len] = (uint8_t)p;   /* each pass moves a buffer that changed */
		if (h->reads) {
			const uint64_t *w = (const uint64_t *)h->src;

			for (size_t i = 0; i < h->len / 8; i++)
				h->sum += w[i];
		} else {
			memcpy(h->dst, h->src, h->len);
			/* the copy is seen: never dropped as a dead store */
			__asm__ volatile("" : : "r"(h->dst) : "memory");
		}
	}
	return NULL;
}

/* One copier process: a warm-up copy (pages faulted in, not counted),
 * then passes over its buffer (copies, or reads of the source alone) once
 * the gate opens; reports its start and end. */
static void copier(int ready, int gate, int res, size_t bytes, uint64_t passes, bool reads)
{
	uint8_t *src = malloc(bytes), *dst = malloc(bytes);
	struct half h[2];
	pthread_t th;
	double t[2] = { 0, 0 };
	char go;

	if (src && dst) {
		memset(src, 0x5a, bytes);
		memcpy(dst, src, bytes);
	}
	if (write(ready, "r", 1) != 1 || read(gate, &go, 1) != 1 || !src || !dst)
		_exit(1);
	for (int i = 0; i < 2; i++)
		h[i] = (struct half){ src + i * (bytes / 2), dst + i * (bytes / 2), bytes / 2, passes,
				      reads, 0 };
	t[0] = xfer_now_s();
	if (pthread_create(&th, NULL, half_passes, &h[1]))
		_exit(1);
	half_passes(&h[0]);
	pthread_join(th, NULL);
	t[1] = xfer_now_s();
	/* the sums are used, so the reads are not optimised away */
	_exit((!reads || h[0].sum + h[1].sum != 0) &&
	      write(res, t, sizeof(t)) == sizeof(t) ? 0 : 1);
}

/* k processes copy (or read) at once; the per-process rate is all their
 * bytes over the time from the first start to the last end, divided by k:
 * on a host with fewer cores than k, the processes take turns, and a rank
 * of a run then gets the same share. */
static double copy_round(uint32_t k, size_t bytes, bool reads)
{
	uint64_t passes = RATE_MOVED / bytes > 4 ? RATE_MOVED / bytes : 4;
	int ready[2], gate[2], res[2];
	pid_t pids[MOE_MAX_EP];
	uint32_t started = 0, got = 0, nready = 0;
	double first = 0, last = 0, t[2];
	char c;

	if (k == 0 || k > MOE_MAX_EP || pipe(ready))
		return 0;
	if (pipe(gate)) {
		close(ready[0]), close(ready[1]);
		return 0;
	}
	if (pipe(res)) {
		close(ready[0]), close(ready[1]), close(gate[0]), close(gate[1]);
		return 0;
	}
	fflush(NULL);
	for (; started < k; started++) {
		pids[started] = fork();
		if (pids[started] == 0) {
			close(ready[0]), close(gate[1]), close(res[0]);
			copier(ready[1], gate[0], res[1], bytes, passes, reads);
		}
		if (pids[started] < 0)
			break;
	}
	close(ready[1]), close(gate[0]), close(res[1]);
	while (nready < started && read(ready[0], &c, 1) == 1)
		nready++;
	for (uint32_t i = 0; i < started; i++)
		if (write(gate[1], "g", 1) != 1)
			break;
	close(gate[1]);
	for (; got < started && read(res[0], t, sizeof(t)) == sizeof(t); got++) {
		if (!got || t[0] < first)
			first = t[0];
		if (t[1] > last)
			last = t[1];
	}
	close(ready[0]), close(res[0]);
	for (uint32_t i = 0; i < started; i++)
		waitpid(pids[i], NULL, 0);
	if (got != k || last <= first)
		return 0;
	return (double)bytes * passes / (last - first) / 1e9;
}

void moe_rates(uint32_t k, size_t bytes, double *copy_gbs, double *read_gbs)
{
	*copy_gbs = *read_gbs = 0;
	for (int i = 0; i < RATE_ROUNDS; i++) {
		double c = copy_round(k, bytes, false), r = copy_round(k, bytes, true);

		*copy_gbs = c > *copy_gbs ? c : *copy_gbs;
		*read_gbs = r > *read_gbs ? r : *read_gbs;
	}
}
