/* SPDX-License-Identifier: MIT */
/*
 * Wire-format fuzzer through the public API (issue 12): region descriptors
 * and engine addresses, mutated (bytes flipped; lengths, addresses, keys
 * grown and shrunk; blobs cut and extended) with their CRC32C recomputed so
 * that most mutations pass the checksum and reach the validation, then used:
 * xfer_rmr_import / xfer_engine_add_peer and, when accepted, writes (and an
 * immediate) through them into a target process whose region lies between
 * two guard areas of canary bytes, next to a deregistered (stale) region.
 *
 * Checked for every mutation: the initiator does not crash; each call
 * returns 0 or a clear -errno (never positive, never past -4095, never a
 * hang past the peer timeout); no byte outside the target's registered
 * region changes (guards and the stale region keep their canaries); the
 * target stays alive. Around the run, writes through the valid descriptor
 * are verified byte for byte, so that the landing check sees real writes.
 *
 *   fuzz_wire                     the short run of make test: seed 1, a few
 *                                 seconds per provider, TAP output
 *   fuzz_wire -n 1000000 -s 7     the long run (make fuzz, under ASan)
 *   options: -n mutations, -s seed, -t seconds (a time bound; 0 none),
 *            -p provider (repeatable), -j jobs (fuzzers at once, seeds
 *            seed*1000+k, the mutations shared out)
 *
 * Providers: tcp;ofi_rxm, where the NIC side (libfabric) checks keys and
 * ranges; local and shm, where no NIC does and the initiator checks every
 * piece against the target's published region table (lib/core/samehost.c).
 */
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xt.h"
#include "xt_wire.h"

#define GUARD (64u << 10)
#define REGION (64u << 10)
#define STALE (16u << 10)
#define CANARY_SEED 0xc0ffee
#define DATA_SEED 0x5eed
#define PEER_TIMEOUT_MS 2000
/* The initiator's: a write to a mutated address that leads nowhere waits
 * this long; a loaded machine's real peer answers well within it. */
#define INIT_TIMEOUT_MS 500
#define ADD_BUDGET 256   /* peer adds per initiator engine (slots are 1024) */

/* ---- the target process ------------------------------------------------ */

enum { T_CHECK = 1, T_QUIT = 2 };

struct target_arg {
	const char *prov;
};

/* Bytes outside the registered region that lost their canary. */
static uint64_t outside_changed(const uint8_t *area, const uint8_t *stale)
{
	uint64_t bad = 0;

	for (uint64_t i = 0; i < GUARD; i++) {
		bad += area[i] != xt_byte(CANARY_SEED, i);
		bad += area[GUARD + REGION + i] != xt_byte(CANARY_SEED, GUARD + REGION + i);
	}
	for (uint64_t i = 0; i < STALE + 2 * GUARD; i++)
		bad += stale[i] != xt_byte(CANARY_SEED + 1, i);
	return bad;
}

/* Region bytes that are neither untouched (0) nor the data pattern at
 * their own offset; with strict, bytes that are not the pattern. */
static uint64_t inside_wrong(const uint8_t *region, bool strict)
{
	uint64_t bad = 0;

	for (uint64_t i = 0; i < REGION; i++) {
		uint8_t want = xt_byte(DATA_SEED, i);

		bad += region[i] != want && (strict || region[i] != 0);
	}
	return bad;
}

static int target_main(int fd, void *argp)
{
	const struct target_arg *a = argp;
	uint8_t *area = mmap(NULL, 2 * GUARD + REGION, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *stale = mmap(NULL, 2 * GUARD + STALE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t addr[XFER_ADDR_MAX], msg[XFER_ADDR_MAX + 8];
	xfer_engine *e = NULL;
	xfer_mr *mr = NULL, *smr = NULL;
	uint32_t peer;
	size_t len = sizeof(addr);
	ssize_t n;

	if (area == MAP_FAILED || stale == MAP_FAILED)
		return 2;
	xt_fill(area, 2 * GUARD + REGION, CANARY_SEED, 0);
	memset(area + GUARD, 0, REGION);
	xt_fill(stale, 2 * GUARD + STALE, CANARY_SEED + 1, 0);
	if (xt_engine(a->prov, 1, PEER_TIMEOUT_MS, &e) || xfer_engine_address(e, addr, &len) ||
	    xt_send(fd, addr, len))
		return 3;
	n = xt_recv(fd, msg, sizeof(msg));
	if (n < 0 || xfer_engine_add_peer(e, msg, (size_t)n, &peer))
		return 4;
	/* the live region, and one deregistered after its descriptor went out */
	if (xfer_mr_reg(e, area + GUARD, REGION, NULL, XFER_MR_REMOTE_WRITE | XFER_MR_NO_KMOD,
			&mr) || xt_send_mr(fd, mr) ||
	    xfer_mr_reg(e, stale + GUARD, STALE, NULL, XFER_MR_REMOTE_WRITE | XFER_MR_NO_KMOD,
			&smr) || xt_send_mr(fd, smr) || xfer_mr_dereg(smr))
		return 5;
	while ((n = xt_recv(fd, msg, sizeof(msg))) >= 8) {
		uint64_t cmd = xt_get_le(msg, 8), r[2] = { 0, 0 };

		if (cmd == T_QUIT)
			break;
		if (cmd == T_CHECK) {
			uint64_t strict, t0 = xt_now_us();

			memcpy(&strict, msg + 8, 8);
			/* A completion at the initiator may come before the bytes
			 * land here (tcp): a valid write gets a while to land. */
			while ((r[1] = inside_wrong(area + GUARD, strict)) && strict &&
			       xt_now_us() - t0 < 5000000)
				usleep(1000);
			r[0] = outside_changed(area, stale);
			if (strict)   /* verified: back to untouched for the next pass */
				memset(area + GUARD, 0, REGION);
		}
		if (xt_send(fd, r, sizeof(r)))
			break;
	}
	xfer_mr_dereg(mr);
	xfer_engine_destroy(e);
	return 0;
}

/* ---- the initiator ------------------------------------------------------- */

struct stats {
	uint64_t mutations, desc_accepted, addr_accepted, writes, writes_ok, writes_failed;
	uint64_t respawns, reconnects, engines, calls_bad, hangs, outside, target_dead;
	char first_problem[200];
};

struct fuzz {
	const char *prov;
	uint64_t rng;
	struct xt_peer t;
	struct target_arg ta;
	xfer_engine *e;
	uint32_t peer;
	xfer_mr *src;
	void *srcbuf;
	uint8_t taddr[XFER_ADDR_MAX], desc[XFER_DESC_MAX], sdesc[XFER_DESC_MAX];
	size_t taddr_len, desc_len, sdesc_len;
	uint32_t adds;
	struct stats st;
};

static void problem(struct fuzz *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct fuzz *f, const char *fmt, ...)
{
	va_list ap;

	if (f->st.first_problem[0])
		return;
	va_start(ap, fmt);
	vsnprintf(f->st.first_problem, sizeof(f->st.first_problem), fmt, ap);
	va_end(ap);
}

static uint64_t rnd(struct fuzz *f, uint64_t n)
{
	return n ? xt_xorshift(&f->rng) % n : 0;
}

/* A return value of the API: 0 or a negative errno the library names. */
static bool clear_ret(struct fuzz *f, int r, const char *what)
{
	if (r == 0 || (r < 0 && r > -4096))
		return true;
	f->st.calls_bad++;
	problem(f, "%s returned %d", what, r);
	return false;
}

static int target_cmd(struct fuzz *f, uint64_t cmd, const void *arg, size_t len, uint64_t r[2])
{
	uint8_t msg[XFER_ADDR_MAX + 8];

	xt_put_le(msg, cmd, 8);
	if (len)
		memcpy(msg + 8, arg, len);
	if (xt_send(f->t.fd, msg, 8 + len) || xt_recv(f->t.fd, r, 2 * sizeof(uint64_t)) != 16)
		return -EIO;
	return 0;
}

static void engine_close(struct fuzz *f)
{
	if (f->src)
		xfer_mr_dereg(f->src);   /* -EBUSY only with a hung write: counted already */
	f->src = NULL;
	xfer_engine_destroy(f->e);
	f->e = NULL;
}

static void target_close(struct fuzz *f)
{
	uint64_t r[2];
	int status;

	if (f->t.pid <= 0)
		return;
	target_cmd(f, T_QUIT, NULL, 0, r);
	status = xt_reap(&f->t);
	if (status) {
		f->st.target_dead++;
		problem(f, "target exited with %d", status);
	}
	f->t.pid = 0;
}

/* Spawn the target and join it: its address, ours, its two descriptors. */
static int target_open(struct fuzz *f)
{
	uint8_t mine[XFER_ADDR_MAX];
	size_t len = sizeof(mine);
	ssize_t n;
	int ret;

	f->ta.prov = f->prov;
	if (xt_spawn(&f->t, target_main, &f->ta))
		return -EIO;
	n = xt_recv(f->t.fd, f->taddr, sizeof(f->taddr));
	if (n < 0)
		return -EIO;
	f->taddr_len = (size_t)n;
	ret = xt_engine(f->prov, 1, INIT_TIMEOUT_MS, &f->e);
	if (ret || (ret = xfer_engine_address(f->e, mine, &len)) || xt_send(f->t.fd, mine, len))
		return ret ? ret : -EIO;
	ret = xfer_engine_add_peer(f->e, f->taddr, f->taddr_len, &f->peer);
	if (ret)
		return ret;
	n = xt_recv(f->t.fd, f->desc, sizeof(f->desc));
	if (n < 0)
		return -EIO;
	f->desc_len = (size_t)n;
	n = xt_recv(f->t.fd, f->sdesc, sizeof(f->sdesc));
	if (n < 0)
		return -EIO;
	f->sdesc_len = (size_t)n;
	f->adds = 0;
	f->st.engines++;
	return xfer_mr_reg(f->e, f->srcbuf, REGION, NULL, XFER_MR_NO_KMOD, &f->src);
}

/* Write len bytes at off through r (src at the same offset, so that a byte
 * that lands where the descriptor says is the pattern of that offset). */
static void write_through(struct fuzz *f, xfer_rmr *r, uint64_t off, uint64_t len, bool imm)
{
	xfer_op *op = NULL;
	uint64_t soff = off < REGION ? off : 0;
	int ret, st;

	if (len > REGION - soff)
		len = REGION - soff;
	if (!len)
		return;
	f->st.writes++;
	ret = xfer_write(f->e, f->src, soff, r, off, len, imm ? XFER_OP_IMM : 0,
			 (uint32_t)rnd(f, 1u << 31), NULL, &op);
	if (!clear_ret(f, ret, "xfer_write") || ret) {
		f->st.writes_failed++;
		return;
	}
	/* an op must end within the peer timeout (and its retries), never hang */
	st = xfer_op_wait(op, 4 * INIT_TIMEOUT_MS + 5000);
	if (st == -ETIMEDOUT && xfer_op_test(op) == -EINPROGRESS) {
		f->st.hangs++;
		problem(f, "a write through a mutated descriptor never finished");
	}
	clear_ret(f, st, "a write's completion");
	if (st && getenv("XFER_FUZZ_VERBOSE"))
		fprintf(stderr, "# write at %llu+%llu: %s; peer: %s\n", (unsigned long long)off,
			(unsigned long long)len, xfer_strerror(st),
			xfer_strerror(xfer_peer_status(f->e, f->peer)));
	if (st)
		f->st.writes_failed++;
	else
		f->st.writes_ok++;
	xfer_op_release(op);
}

/* Mutate blob b (len *len, capacity cap) in place. */
static void mutate(struct fuzz *f, uint8_t *b, size_t *len, size_t cap, bool is_desc)
{
	int rounds = 1 + (int)rnd(f, 3);

	for (int k = 0; k < rounds; k++) {
		uint64_t delta = rnd(f, 4) == 0 ? rnd(f, 1ull << 40) : 4096ull * (1 + rnd(f, 16));
		size_t at;

		switch (rnd(f, 8)) {
		case 0:   /* a flipped byte anywhere */
			b[rnd(f, *len)] ^= (uint8_t)(1 + rnd(f, 255));
			break;
		case 1:   /* cut or extended (the length field follows, or not) */
			if (rnd(f, 2) && *len > 16)
				*len -= 1 + rnd(f, *len < 64 ? *len - 16 : 48);
			else if (*len + 64 <= cap)
				*len += 8 * (1 + rnd(f, 8));
			if (rnd(f, 4))
				xt_put_le(b + 8, *len, 4);
			break;
		default:   /* a 64-bit field grown or shrunk */
			if (is_desc) {
				/* len 40, base 32, a rail's rkey / raddr 56 + 16 i (+ 8) */
				static const size_t fields[] = { 40, 40, 32, 56, 64, 64, 72, 80 };

				at = fields[rnd(f, sizeof(fields) / sizeof(fields[0]))];
			} else {
				/* engine id 16; rail 0 at 56: sink rkey 64, raddr 72,
				 * address bytes from 80 (a sockaddr: port, IP) */
				static const size_t fields[] = { 16, 64, 72, 72, 80, 84, 56 };

				at = fields[rnd(f, sizeof(fields) / sizeof(fields[0]))];
			}
			if (at + 8 > *len)
				break;
			if (at == 56 && !is_desc) {   /* the rail address length, 16 bits */
				xt_put_le(b + at, rnd(f, 2) ? rnd(f, 200) : xt_get_le(b + at, 2) + 8, 2);
				break;
			}
			xt_put_le(b + at, rnd(f, 2) ? xt_get_le(b + at, 8) + delta : xt_get_le(b + at, 8) - delta, 8);
			break;
		}
	}
	if (rnd(f, 10))   /* mostly past the checksum, into the validation */
		xt_wire_reseal(b, *len);
}

static void check_target(struct fuzz *f, bool strict)
{
	uint64_t r[2], s = strict;

	if (target_cmd(f, T_CHECK, &s, sizeof(s), r)) {
		f->st.target_dead++;
		problem(f, "the target stopped answering");
		return;
	}
	if (r[0]) {
		f->st.outside += r[0];
		problem(f, "%llu bytes outside the registered region changed (mutation %llu)",
			(unsigned long long)r[0], (unsigned long long)f->st.mutations);
	}
	if (strict && r[1])
		problem(f, "%llu bytes of a valid write are wrong", (unsigned long long)r[1]);
}

static void respawn(struct fuzz *f);

static void one_mutation(struct fuzz *f)
{
	uint8_t b[XFER_ADDR_MAX + 64];
	size_t len;
	xfer_rmr *r = NULL;
	int ret;

	f->st.mutations++;
	if (rnd(f, 10) < 7) {
		bool stale = rnd(f, 8) == 0;

		len = stale ? f->sdesc_len : f->desc_len;
		memcpy(b, stale ? f->sdesc : f->desc, len);
		mutate(f, b, &len, sizeof(b), true);
		ret = xfer_rmr_import(f->e, f->peer, b, len, &r);
		if (!clear_ret(f, ret, "xfer_rmr_import") || ret)
			return;
		f->st.desc_accepted++;
		uint64_t rl = xfer_rmr_len(r);

		write_through(f, r, 0, 4096, false);
		if (rl > 4096)   /* the old end of a grown descriptor, and past it */
			write_through(f, r, rl - 4096, 4096, rnd(f, 2));
		write_through(f, r, rnd(f, rl), 1 + rnd(f, 8192), false);
		xfer_rmr_free(r);
		check_target(f, false);
	} else {
		uint32_t p;

		len = f->taddr_len;
		memcpy(b, f->taddr, len);
		mutate(f, b, &len, sizeof(b), false);
		if (++f->adds > ADD_BUDGET)
			respawn(f);   /* the engine's peer slots run out: both sides afresh */
		ret = xfer_engine_add_peer(f->e, b, len, &p);
		if (!clear_ret(f, ret, "xfer_engine_add_peer") || ret)
			return;
		f->st.addr_accepted++;
		if (xfer_rmr_import(f->e, p, f->desc, f->desc_len, &r) == 0) {
			write_through(f, r, 0, 4096, true);
			xfer_rmr_free(r);
		}
		ret = xfer_imm(f->e, p, 7, NULL, NULL);
		clear_ret(f, ret, "xfer_imm");
		check_target(f, false);
	}
	/* A mutation that took the real peer down (tcp;ofi_rxm closes the
	 * connection on a bad key): add it again as a new peer, else start
	 * both sides again; counted either way. */
	if (xfer_peer_status(f->e, f->peer) && f->adds++ < ADD_BUDGET &&
	    xfer_engine_add_peer(f->e, f->taddr, f->taddr_len, &f->peer) == 0) {
		f->st.reconnects++;
		return;
	}
	if (xfer_peer_status(f->e, f->peer))
		respawn(f);
}

static void respawn(struct fuzz *f)
{
	f->st.respawns++;
	engine_close(f);
	target_close(f);
	if (target_open(f))
		problem(f, "could not respawn the target");
}

/* Every byte of the region through the valid descriptor, verified. A
 * connection the last mutation took down is not a finding: afresh first. */
static void valid_pass(struct fuzz *f)
{
	xfer_rmr *r = NULL;
	xfer_op *op = NULL;
	int st = -EIO;

	for (int tries = 0; tries < 2 && st; tries++) {
		/* a fresh peer when the last one is down (a loaded machine can
		 * miss the initiator's short timeout) */
		if (xfer_peer_status(f->e, f->peer))
			respawn(f);
		if (xfer_rmr_import(f->e, f->peer, f->desc, f->desc_len, &r)) {
			problem(f, "the valid descriptor was refused");
			return;
		}
		if (xfer_write(f->e, f->src, 0, r, 0, REGION, 0, 0, NULL, &op) == 0) {
			st = xfer_op_wait(op, 4 * INIT_TIMEOUT_MS + 5000);
			xfer_op_release(op);
		}
		xfer_rmr_free(r);
	}
	if (st)
		problem(f, "a write through the valid descriptor: %s", xfer_strerror(st));
	else
		check_target(f, true);
}

/* The cases issue 12 names, first, whatever the seed: a descriptor grown
 * by 4 KiB and a 4 KiB write at its old end; base and address moved back
 * by 4 KiB and a write at 0; a write through the stale descriptor. */
static void directed(struct fuzz *f)
{
	uint8_t b[XFER_DESC_MAX];
	size_t len;
	xfer_rmr *r;

	for (int k = 0; k < 3; k++) {
		const uint8_t *from = k == 2 ? f->sdesc : f->desc;

		len = k == 2 ? f->sdesc_len : f->desc_len;
		memcpy(b, from, len);
		if (k == 0) {
			xt_put_le(b + 40, xt_get_le(b + 40, 8) + 4096, 8);
		} else if (k == 1) {
			xt_put_le(b + 32, xt_get_le(b + 32, 8) - 4096, 8);
			xt_put_le(b + 64, xt_get_le(b + 64, 8) - 4096, 8);   /* rail 0's raddr */
		}
		xt_wire_reseal(b, len);
		f->st.mutations++;
		r = NULL;
		if (!clear_ret(f, xfer_rmr_import(f->e, f->peer, b, len, &r), "xfer_rmr_import") || !r)
			continue;
		f->st.desc_accepted++;
		write_through(f, r, k == 0 ? REGION : 0, 4096, k == 0);
		xfer_rmr_free(r);
		check_target(f, false);
		if (xfer_peer_status(f->e, f->peer))
			respawn(f);
	}
}

static int run_provider(const char *prov, uint64_t seed, uint64_t iters, double seconds,
			int tap)
{
	struct fuzz *f = calloc(1, sizeof(*f));
	const char *why = xt_transport_skip(prov);
	double t0 = xfer_now_s();
	int ok;

	if (!f)
		return 1;
	if (why) {
		printf("ok %d fuzz_wire.%s # SKIP %s\n", tap, prov, why);
		free(f);
		return 0;
	}
	f->prov = prov;
	f->rng = seed * 0x9e3779b97f4a7c15ull + 1;
	f->srcbuf = xt_alloc(REGION);
	xt_fill(f->srcbuf, REGION, DATA_SEED, 0);
	if (target_open(f)) {
		printf("not ok %d fuzz_wire.%s: the target could not be joined\n", tap, prov);
		target_close(f);
		free(f);
		return 1;
	}
	valid_pass(f);
	directed(f);
	while (f->st.mutations < iters && !f->st.target_dead && f->t.pid > 0 &&
	       (seconds <= 0 || xfer_now_s() - t0 < seconds))
		one_mutation(f);
	/* The last word on the fuzzed target (nothing outside changed, and it
	 * exits cleanly: target_close), then real writes on a fresh pair: a
	 * connection a mutation broke may have lost writes it reported done
	 * (tcp;ofi_rxm's completions are not delivery), which is not what the
	 * landing check is about. */
	if (f->t.pid > 0 && !f->st.target_dead) {
		check_target(f, false);
		respawn(f);
		valid_pass(f);
	}
	engine_close(f);
	target_close(f);
	ok = !f->st.first_problem[0];
	if (tap <= 0) {   /* one of several jobs: the parent prints the TAP line */
		printf("# job %d: %s\n", -tap, ok ? "ok" : f->st.first_problem);
		tap = 0;
	}
	printf("# %s: %llu mutations in %.1f s: %llu descriptors and %llu addresses accepted, "
	       "%llu writes (%llu ok, %llu failed), %llu bad returns, %llu hangs, %llu bytes "
	       "outside, %llu reconnects, %llu respawns, %llu engines\n", prov,
	       (unsigned long long)f->st.mutations, xfer_now_s() - t0,
	       (unsigned long long)f->st.desc_accepted, (unsigned long long)f->st.addr_accepted,
	       (unsigned long long)f->st.writes, (unsigned long long)f->st.writes_ok,
	       (unsigned long long)f->st.writes_failed, (unsigned long long)f->st.calls_bad,
	       (unsigned long long)f->st.hangs, (unsigned long long)f->st.outside,
	       (unsigned long long)f->st.reconnects, (unsigned long long)f->st.respawns,
	       (unsigned long long)f->st.engines);
	if (ok && tap)
		printf("ok %d fuzz_wire.%s\n", tap, prov);
	else if (tap)
		printf("not ok %d fuzz_wire.%s: %s\n", tap, prov, f->st.first_problem);
	fflush(stdout);
	free(f->srcbuf);
	free(f);
	return !ok;
}

/* jobs fuzzers at once, each with its own target and seed: most of a
 * mutation's time is waiting (timeouts, connections), not CPU. */
static int run_jobs(const char *prov, uint64_t seed, uint64_t iters, double seconds, int tap,
		    int jobs)
{
	const char *why = xt_transport_skip(prov);
	pid_t pids[64];
	int bad = 0;

	if (why)
		return run_provider(prov, seed, iters, seconds, tap);   /* its SKIP */
	fflush(stdout);
	for (int k = 0; k < jobs; k++) {
		pids[k] = fork();
		if (pids[k] == 0)
			_exit(run_provider(prov, seed * 1000 + (uint64_t)k,
					   iters / (uint64_t)jobs + ((uint64_t)k < iters % (uint64_t)jobs),
					   seconds, -k));
	}
	for (int k = 0; k < jobs; k++) {
		int status = 1;

		if (pids[k] < 0 || waitpid(pids[k], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			bad++;
	}
	if (bad)
		printf("not ok %d fuzz_wire.%s: %d of %d jobs failed\n", tap, prov, bad, jobs);
	else
		printf("ok %d fuzz_wire.%s (%d jobs)\n", tap, prov, jobs);
	return bad != 0;
}

int main(int argc, char **argv)
{
	const char *provs[8];
	int np = 0, c, fails = 0, jobs = 1;
	uint64_t seed = 1, iters = UINT64_MAX;
	double seconds = -1;
	bool by_count = false;

	while ((c = getopt(argc, argv, "n:s:t:p:j:")) != -1) {
		switch (c) {
		case 'n': iters = strtoull(optarg, NULL, 0); by_count = true; break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 't': seconds = strtod(optarg, NULL); break;
		case 'p': if (np < 8) provs[np++] = optarg; break;
		case 'j': jobs = atoi(optarg); jobs = jobs < 1 ? 1 : jobs > 64 ? 64 : jobs; break;
		default:
			fprintf(stderr, "usage: %s [-n mutations] [-s seed] [-t seconds] "
				"[-p provider]... [-j jobs]\n", argv[0]);
			return 2;
		}
	}
	if (seconds < 0)
		seconds = by_count ? 0 : 4;   /* the short run: 4 s a provider */
	if (!np) {
		provs[np++] = "tcp;ofi_rxm";
		provs[np++] = "local";
		provs[np++] = "shm";
	}
	signal(SIGPIPE, SIG_IGN);
	printf("TAP version 13\n1..%d\n# seed %llu\n", np, (unsigned long long)seed);
	for (int i = 0; i < np; i++)
		fails += jobs > 1 ? run_jobs(provs[i], seed, iters, seconds, i + 1, jobs)
				  : run_provider(provs[i], seed, iters, seconds, i + 1);
	return fails ? 1 : 0;
}
