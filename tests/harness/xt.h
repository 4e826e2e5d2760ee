/* SPDX-License-Identifier: MIT */
/*
 * What xfer's tests share beside the harness (harness.h): engines on
 * loopback providers, peer processes joined by a socketpair for the
 * out-of-band exchange of addresses and descriptors, and byte patterns.
 */
#ifndef XT_H
#define XT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "clock.h"   /* xfer_now_s, xfer_cpu_s, xfer_user_s */
#include "xfer.h"

/* Providers to test on: $XFER_TEST_PROVIDERS (space-separated) or, by
 * default, shm, tcp;ofi_rxm and xfer's own local backend. $XFER_TEST_DEVICES (comma-separated NIC
 * names, e.g. "rxe0,rxe1") is passed to engines as attr.devices. */
int xt_providers(const char *out[], int max);
bool xt_provider_available(const char *prov);
/* NULL when prov is tested here and opens, else why not (for a SKIP). */
const char *xt_transport_skip(const char *prov);
int xt_engine(const char *prov, uint32_t rails, uint32_t timeout_ms, xfer_engine **e);
/* Initialise libfabric (its fi_getinfo over every provider) in this process
 * once, when a libfabric provider is among those tested. Called before the
 * harness forks its cases (XT_TRANSPORT_VARIANTS), so that no case and no
 * peer process pays libfabric 1.17's start-up again: ~0.3 s a process here,
 * most of it its verbs provider reading /proc/kallsyms, in every case on
 * shm or tcp. It opens nothing: each case still opens its own engines. */
void xt_warm_fabric(void);

/* Peer processes. */
struct xt_peer {
	pid_t pid;
	int fd;                  /* our end of the socketpair */
};
/* Fork a child running fn(fd, arg); its return value is its exit status. */
int xt_spawn(struct xt_peer *p, int (*fn)(int fd, void *arg), void *arg);
int xt_reap(struct xt_peer *p);   /* child's exit status, or 128+signal */

int xt_send(int fd, const void *buf, size_t len);
ssize_t xt_recv(int fd, void *buf, size_t cap);   /* one message; -1 on EOF/error */
int xt_send_u64(int fd, uint64_t v);
int xt_recv_u64(int fd, uint64_t *v);

/* Exchange engine addresses and add each other as peers. */
int xt_connect(xfer_engine *e, int fd, uint32_t *peer);
/* Send an mr's descriptor / receive and import one. */
int xt_send_mr(int fd, xfer_mr *mr);
int xt_recv_rmr(xfer_engine *e, uint32_t peer, int fd, xfer_rmr **rmr);

/* Byte patterns: the byte at absolute position i of stream `seed`. */
static inline uint8_t xt_byte(uint64_t seed, uint64_t i)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ seed * 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return (uint8_t)(x ^ (x >> 17));
}
void xt_fill(void *buf, uint64_t len, uint64_t seed, uint64_t start);
/* First mismatching offset, or -1 when buf holds the pattern. */
int64_t xt_verify(const void *buf, uint64_t len, uint64_t seed, uint64_t start);
void *xt_alloc(size_t len);   /* page-aligned, zeroed */

/* The tools under test: $XFER_BUILD/bin/NAME (default build/) into buf;
 * 0 when it is there and executable, else -1 (a test skips). */
int xt_tool_path(const char *name, char *buf, size_t len);
/* Run `tool args` through the shell, stderr dropped, its stdout into out
 * (NUL-terminated, cut at len - 1); its exit status, or -1 when it did not
 * exit (a signal) or could not start. */
int xt_run_tool(const char *tool, const char *args, char *out, size_t len);

/* xorshift64: the next number of the pseudo-random stream *state (seeded
 * non-zero), for tests that must repeat themselves. */
static inline uint64_t xt_xorshift(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

/* dec(copy, len, out), where copy holds the len bytes at b in an
 * exactly-sized heap block (len 0: a pointer past the end of a 1-byte
 * one), so that any over-read by the decoder is an ASan error; dec's value. */
#define XT_DECODE_EXACT(dec, b, len, out) __extension__ ({ \
	size_t xt_len_ = (len); \
	uint8_t *xt_copy_ = malloc(xt_len_ ? xt_len_ : 1); \
	int xt_ret_; \
	memcpy(xt_copy_, (b), xt_len_); \
	xt_ret_ = dec(xt_len_ ? xt_copy_ : xt_copy_ + 1, xt_len_, (out)); \
	free(xt_copy_); \
	xt_ret_; \
})

uint64_t xt_now_us(void);

/* 1 in an AddressSanitizer build (timings there are not the product's). */
#if defined(__SANITIZE_ADDRESS__)
#define XT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XT_SANITIZED 1
#endif
#endif
#ifndef XT_SANITIZED
#define XT_SANITIZED 0
#endif

#endif
