/* SPDX-License-Identifier: MIT */
/*
 * The key-value store under the rendezvous protocol (rdzv.c): etcd
 * (etcd.c) or a shared directory (file.c) behind one ops table.
 *
 * Keys are relative to the job ("ranks/3", "blob/addrs/3"); the store puts
 * them under its job prefix (/xfer/<job>/ in etcd, <dir>/<job>/ on disk).
 * A lease is what etcd calls one: an id with a TTL, kept alive by
 * keepalive(); when it is revoked or expires every key put under it is
 * gone. Lease 0 is no lease.
 *
 * Every call takes a deadline (xfer_now_ns() scale): a store that does
 * not answer is retried until then. Errors are negative errno values, the
 * text in the store's own buffer (store_error()).
 */
#ifndef XFER_RDZV_STORE_H
#define XFER_RDZV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rdzv_store;

struct rdzv_kv {
	char *key;               /* relative to the job, NUL-terminated */
	uint8_t *val;            /* NULL with keys_only */
	size_t len;
	int64_t lease;
};

struct rdzv_store_ops {
	const char *scheme;      /* "etcd://" or "file://" */
	/* where: the URL past the scheme */
	int (*open)(const char *where, const char *job, uint64_t deadline,
		    struct rdzv_store **out, char *err, size_t errlen);
	/* A second handle on the same store, for another thread. */
	int (*clone)(struct rdzv_store *s, struct rdzv_store **out);
	void (*close)(struct rdzv_store *s);
	/* *ttl_s: asked, then granted (etcd raises a small TTL). */
	int (*grant)(struct rdzv_store *s, uint32_t *ttl_s, uint64_t deadline, int64_t *lease);
	int (*keepalive)(struct rdzv_store *s, int64_t lease, uint64_t deadline);  /* -ENOENT: gone */
	int (*revoke)(struct rdzv_store *s, int64_t lease, uint64_t deadline);     /* -ENOENT: gone */
	/* Create key only if absent: -EEXIST when it is there (under another
	 * lease: a retried request that had created it succeeds). */
	int (*create)(struct rdzv_store *s, const char *key, const void *val, size_t len,
		      int64_t lease, uint64_t deadline);
	int (*put)(struct rdzv_store *s, const char *key, const void *val, size_t len,
		   int64_t lease, uint64_t deadline);
	/* Every key that starts with prefix, sorted; free with rdzv_kv_free. */
	int (*range)(struct rdzv_store *s, const char *prefix, bool keys_only,
		     struct rdzv_kv **kvs, size_t *n, uint64_t deadline);
	/* How many keys start with prefix: the cheap poll. It may lag behind
	 * (etcd: a serializable read, served by the member without a raft
	 * round), never run ahead. */
	int (*count)(struct rdzv_store *s, const char *prefix, size_t *n, uint64_t deadline);
	const char *(*error)(const struct rdzv_store *s);
};

extern const struct rdzv_store_ops rdzv_etcd_ops;
extern const struct rdzv_store_ops rdzv_file_ops;

void rdzv_kv_free(struct rdzv_kv *kvs, size_t n);

/* Sleep until the earlier of now + us and deadline. */
void rdzv_sleep_until(uint64_t us, uint64_t deadline);

#endif
