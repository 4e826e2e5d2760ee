// SPDX-License-Identifier: MIT
/*
 * The etcd store: etcd's v3 JSON gateway (etcd 3.4: POST /v3/kv/range,
 * /v3/kv/put, /v3/kv/txn, /v3/lease/grant, /keepalive, /revoke) over
 * libcurl, JSON through json-c. Keys and values travel base64, int64
 * fields come back as JSON strings.
 *
 * A request that gets no answer (connection refused, a timeout, etcd's
 * "unavailable" while it restarts or elects a leader) is retried with
 * backoff on the next endpoint until the caller's deadline; the error then
 * names every endpoint and the last failure.
 */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json.h>

#include "clock.h"
#include "store.h"

#define MAX_ENDPOINTS 16
#define REQ_TIMEOUT_MS 2000      /* one request; etcd answers in ms when up */
#define CONNECT_TIMEOUT_MS 1000

struct rdzv_store {
	CURL *curl;
	char *endpoints[MAX_ENDPOINTS];   /* "http://host:port" */
	unsigned n_endpoints, cur;
	char *prefix;                     /* "/xfer/<job>/" */
	size_t prefix_len;
	char err[800];
	/* response body */
	char *body;
	size_t body_len, body_cap;
};

/*
 * libcurl, loaded on first use of an etcd:// store rather than linked:
 * linked, it and the libraries it pulls in (TLS, HTTP/2, SSH, LDAP,
 * Kerberos: 30 of them on Debian 12) were loaded by every program that
 * links libxfer, and doubled the start of a tool (4 to 10 ms), rendezvous
 * or not. A node without libcurl runs everything but etcd://.
 */
static struct {
	CURLcode (*global_init)(long);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	void (*easy_cleanup)(CURL *);
	const char *(*easy_strerror)(CURLcode);
} cu;
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static bool curl_ok;

static void curl_init(void)
{
	/* Never closed: curl keeps global state for the process. Debian's
	 * two flavours (OpenSSL, GnuTLS) have the same ABI. */
	void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);

	if (!h)
		h = dlopen("libcurl-gnutls.so.4", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return;
	*(void **)&cu.global_init = dlsym(h, "curl_global_init");
	*(void **)&cu.easy_init = dlsym(h, "curl_easy_init");
	*(void **)&cu.easy_setopt = dlsym(h, "curl_easy_setopt");
	*(void **)&cu.easy_perform = dlsym(h, "curl_easy_perform");
	*(void **)&cu.easy_getinfo = dlsym(h, "curl_easy_getinfo");
	*(void **)&cu.easy_cleanup = dlsym(h, "curl_easy_cleanup");
	*(void **)&cu.easy_strerror = dlsym(h, "curl_easy_strerror");
	/* Plain HTTP only: no TLS initialisation. */
	curl_ok = cu.global_init && cu.easy_init && cu.easy_setopt && cu.easy_perform &&
		  cu.easy_getinfo && cu.easy_cleanup && cu.easy_strerror &&
		  cu.global_init(CURL_GLOBAL_NOTHING) == CURLE_OK;
}

/* ---- base64 ------------------------------------------------------------ */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const void *data, size_t len)
{
	const uint8_t *p = data;
	char *out = malloc(4 * ((len + 2) / 3) + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		*o++ = b64[v >> 18 & 63];
		*o++ = b64[v >> 12 & 63];
		*o++ = i + 1 < len ? b64[v >> 6 & 63] : '=';
		*o++ = i + 2 < len ? b64[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static int b64_val(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;

	return p ? (int)(p - b64) : -1;
}

/* Decodes into a fresh buffer (NUL-terminated for keys); -EBADMSG when
 * the text is not base64. */
static int b64_decode(const char *s, uint8_t **out, size_t *out_len)
{
	size_t n = strlen(s), o = 0;
	uint8_t *buf;

	if (n % 4)
		return -EBADMSG;
	buf = malloc(n / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i += 4) {
		int v[4];

		for (int k = 0; k < 4; k++) {
			v[k] = s[i + k] == '=' && i + 4 == n && k >= 2 ? 0 : b64_val(s[i + k]);
			if (v[k] < 0) {
				free(buf);
				return -EBADMSG;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];

		buf[o++] = (uint8_t)(w >> 16);
		if (s[i + 2] != '=')
			buf[o++] = (uint8_t)(w >> 8);
		if (s[i + 3] != '=')
			buf[o++] = (uint8_t)w;
	}
	buf[o] = '\0';
	*out = buf;
	*out_len = o;
	return 0;
}

/* ---- requests ---------------------------------------------------------- */

static const char *etcd_error(const struct rdzv_store *s)
{
	return s->err;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct rdzv_store *s = arg;
	size_t n = size * nmemb;

	if (s->body_len + n + 1 > s->body_cap) {
		size_t cap = s->body_cap ? s->body_cap : 4096;
		char *b;

		while (cap < s->body_len + n + 1)
			cap *= 2;
		b = realloc(s->body, cap);
		if (!b)
			return 0;   /* curl fails the transfer */
		s->body = b;
		s->body_cap = cap;
	}
	memcpy(s->body + s->body_len, p, n);
	s->body_len += n;
	s->body[s->body_len] = '\0';
	return n;
}

static int curl_errno(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST: return -EHOSTUNREACH;
	case CURLE_OUT_OF_MEMORY: return -ENOMEM;
	default: return -ETIMEDOUT;
	}
}

/*
 * POST body to path; *resp is the parsed answer (json_object_put it).
 * etcd's own errors come back as {"error": ..., "code": N} (gRPC codes):
 * 5 (not found) is -ENOENT, 14 (unavailable) and 4 (deadline) are
 * retried, any other is -EIO with etcd's text.
 */
static int request(struct rdzv_store *s, const char *path, json_object *req, uint64_t deadline,
		   json_object **resp)
{
	const char *text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	uint64_t backoff_us = 5000;
	int last = -ETIMEDOUT;
	char last_what[400] = "no request could be sent before the deadline";
	unsigned tries = 0;

	for (;;) {
		uint64_t now = xfer_now_ns();
		const char *ep = s->endpoints[s->cur];
		char url[256];
		long left_ms, http = 0;
		CURLcode c;

		if (now >= deadline && tries > 0)
			break;
		tries++;
		/* The first try past the deadline still gets a short while: a
		 * poll that answers then is worth more than a timeout. */
		left_ms = now >= deadline ? 50 : (long)((deadline - now) / 1000000) + 1;
		snprintf(url, sizeof(url), "%s%s", ep, path);
		s->body_len = 0;
		if (s->body)
			s->body[0] = '\0';
		cu.easy_setopt(s->curl, CURLOPT_URL, url);
		cu.easy_setopt(s->curl, CURLOPT_POSTFIELDS, text);
		cu.easy_setopt(s->curl, CURLOPT_TIMEOUT_MS, left_ms < REQ_TIMEOUT_MS ? left_ms : REQ_TIMEOUT_MS);
		cu.easy_setopt(s->curl, CURLOPT_CONNECTTIMEOUT_MS,
				 left_ms < CONNECT_TIMEOUT_MS ? left_ms : CONNECT_TIMEOUT_MS);
		c = cu.easy_perform(s->curl);
		if (c == CURLE_OK) {
			json_object *j = json_tokener_parse(s->body ? s->body : "");
			json_object *code = NULL, *msg = NULL;

			cu.easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &http);
			if (!j) {
				last = -EIO;
				snprintf(last_what, sizeof(last_what), "%s: HTTP %ld, not JSON: %.80s",
					 url, http, s->body ? s->body : "");
			} else if (json_object_object_get_ex(j, "code", &code) &&
				   json_object_object_get_ex(j, "error", &msg)) {
				int gc = json_object_get_int(code);

				snprintf(last_what, sizeof(last_what), "%s: %s", url, json_object_get_string(msg));
				json_object_put(j);
				if (gc == 5) {
					snprintf(s->err, sizeof(s->err), "%s", last_what);
					return -ENOENT;
				}
				if (gc != 14 && gc != 4) {
					snprintf(s->err, sizeof(s->err), "%s", last_what);
					return -EIO;
				}
				last = -EAGAIN;
			} else if (http != 200) {
				json_object_put(j);
				last = -EIO;
				snprintf(last_what, sizeof(last_what), "%s: HTTP %ld", url, http);
			} else {
				*resp = j;
				return 0;
			}
		} else {
			last = curl_errno(c);
			snprintf(last_what, sizeof(last_what), "%s: %s", url, cu.easy_strerror(c));
		}
		/* The next endpoint, after a pause: etcd restarting answers
		 * "connection refused" at once. */
		s->cur = (s->cur + 1) % s->n_endpoints;
		if (xfer_now_ns() >= deadline)
			break;
		rdzv_sleep_until(backoff_us, deadline);
		backoff_us = backoff_us * 2 > 200000 ? 200000 : backoff_us * 2;
	}
	{
		char eps[200] = "";
		size_t o = 0;

		for (unsigned i = 0; i < s->n_endpoints && o < sizeof(eps); i++)
			o += (size_t)snprintf(eps + o, sizeof(eps) - o, "%s%s", i ? ", " : "", s->endpoints[i]);
		snprintf(s->err, sizeof(s->err), "etcd at %s did not answer in time (%u attempts); last: %s",
			 eps, tries, last_what);
	}
	return last == -EAGAIN || last == -EIO ? -ETIMEDOUT : last;
}

static json_object *jstr_b64(const void *p, size_t len)
{
	char *e = b64_encode(p, len);
	json_object *j = e ? json_object_new_string(e) : NULL;

	free(e);
	return j;
}

static json_object *jkey(struct rdzv_store *s, const char *key)
{
	size_t kl = strlen(key);
	char *full = malloc(s->prefix_len + kl + 1);
	json_object *j;

	if (!full)
		return NULL;
	memcpy(full, s->prefix, s->prefix_len);
	memcpy(full + s->prefix_len, key, kl + 1);
	j = jstr_b64(full, s->prefix_len + kl);
	free(full);
	return j;
}

static json_object *jint64(int64_t v)
{
	char b[24];

	snprintf(b, sizeof(b), "%" PRId64, v);
	return json_object_new_string(b);
}

static int64_t get_i64(json_object *o, const char *field)
{
	json_object *f;

	if (!json_object_object_get_ex(o, field, &f))
		return 0;
	return json_object_get_int64(f);
}

/* ---- ops --------------------------------------------------------------- */

static int etcd_grant(struct rdzv_store *s, uint32_t *ttl_s, uint64_t deadline, int64_t *lease)
{
	json_object *req = json_object_new_object(), *resp = NULL;
	int ret;

	json_object_object_add(req, "TTL", jint64(*ttl_s));
	ret = request(s, "/v3/lease/grant", req, deadline, &resp);
	json_object_put(req);
	if (ret)
		return ret;
	*lease = get_i64(resp, "ID");
	if (get_i64(resp, "TTL") > 0)
		*ttl_s = (uint32_t)get_i64(resp, "TTL");
	json_object_put(resp);
	if (*lease == 0) {
		snprintf(s->err, sizeof(s->err), "etcd granted no lease (no ID in its answer)");
		return -EIO;
	}
	return 0;
}

static int etcd_keepalive(struct rdzv_store *s, int64_t lease, uint64_t deadline)
{
	json_object *req = json_object_new_object(), *resp = NULL, *result;
	int ret;

	json_object_object_add(req, "ID", jint64(lease));
	ret = request(s, "/v3/lease/keepalive", req, deadline, &resp);
	json_object_put(req);
	if (ret)
		return ret;
	/* A lease etcd does not know comes back without a TTL. */
	if (!json_object_object_get_ex(resp, "result", &result) || get_i64(result, "TTL") <= 0) {
		snprintf(s->err, sizeof(s->err), "lease %" PRIx64 " is gone (expired or revoked)",
			 (uint64_t)lease);
		ret = -ENOENT;
	}
	json_object_put(resp);
	return ret;
}

static int etcd_revoke(struct rdzv_store *s, int64_t lease, uint64_t deadline)
{
	json_object *req = json_object_new_object(), *resp = NULL;
	int ret;

	json_object_object_add(req, "ID", jint64(lease));
	ret = request(s, "/v3/lease/revoke", req, deadline, &resp);
	json_object_put(req);
	json_object_put(resp);
	return ret;
}

static json_object *put_req(struct rdzv_store *s, const char *key, const void *val, size_t len,
			    int64_t lease)
{
	json_object *p = json_object_new_object();

	json_object_object_add(p, "key", jkey(s, key));
	json_object_object_add(p, "value", jstr_b64(val, len));
	if (lease)
		json_object_object_add(p, "lease", jint64(lease));
	return p;
}

static int etcd_put(struct rdzv_store *s, const char *key, const void *val, size_t len,
		    int64_t lease, uint64_t deadline)
{
	json_object *req = put_req(s, key, val, len, lease), *resp = NULL;
	int ret = request(s, "/v3/kv/put", req, deadline, &resp);

	json_object_put(req);
	json_object_put(resp);
	return ret;
}

/*
 * One txn: if the key's create_revision is 0 (absent), put; else read it.
 * A key found under our own lease is one an earlier attempt of this very
 * request created (its answer lost to a restart): success.
 */
static int etcd_create(struct rdzv_store *s, const char *key, const void *val, size_t len,
		       int64_t lease, uint64_t deadline)
{
	json_object *req = json_object_new_object(), *resp = NULL;
	json_object *cmp = json_object_new_object(), *cmps = json_object_new_array();
	json_object *succ = json_object_new_array(), *fail = json_object_new_array();
	json_object *op = json_object_new_object(), *rr = json_object_new_object();
	json_object *rop = json_object_new_object(), *ok, *resps;
	int ret;

	json_object_object_add(cmp, "key", jkey(s, key));
	json_object_object_add(cmp, "target", json_object_new_string("CREATE"));
	json_object_object_add(cmp, "result", json_object_new_string("EQUAL"));
	json_object_object_add(cmp, "create_revision", jint64(0));
	json_object_array_add(cmps, cmp);
	json_object_object_add(op, "request_put", put_req(s, key, val, len, lease));
	json_object_array_add(succ, op);
	json_object_object_add(rr, "key", jkey(s, key));
	json_object_object_add(rop, "request_range", rr);
	json_object_array_add(fail, rop);
	json_object_object_add(req, "compare", cmps);
	json_object_object_add(req, "success", succ);
	json_object_object_add(req, "failure", fail);
	ret = request(s, "/v3/kv/txn", req, deadline, &resp);
	json_object_put(req);
	if (ret)
		return ret;
	if (json_object_object_get_ex(resp, "succeeded", &ok) && json_object_get_boolean(ok)) {
		json_object_put(resp);
		return 0;
	}
	ret = -EEXIST;
	/* responses[0].response_range.kvs[0].lease */
	if (json_object_object_get_ex(resp, "responses", &resps) &&
	    json_object_array_length(resps) > 0) {
		json_object *r0 = json_object_array_get_idx(resps, 0), *rng, *kvs;

		if (json_object_object_get_ex(r0, "response_range", &rng) &&
		    json_object_object_get_ex(rng, "kvs", &kvs) && json_object_array_length(kvs) > 0 &&
		    lease && get_i64(json_object_array_get_idx(kvs, 0), "lease") == lease)
			ret = 0;
	}
	json_object_put(resp);
	if (ret)
		snprintf(s->err, sizeof(s->err), "key %s%s exists", s->prefix, key);
	return ret;
}

/* The smallest key greater than every key with this prefix: the prefix
 * with its last byte incremented (prefixes here end in '/'). */
/* A range request over the job's keys that start with prefix: key, and
 * range_end the same bytes with the last one incremented (etcd's prefix). */
static json_object *range_req(struct rdzv_store *s, const char *prefix)
{
	json_object *req = json_object_new_object();
	size_t pl = strlen(prefix), fl = s->prefix_len + pl;
	char *end = malloc(fl + 1);

	if (!end) {
		json_object_put(req);
		return NULL;
	}
	memcpy(end, s->prefix, s->prefix_len);
	memcpy(end + s->prefix_len, prefix, pl + 1);
	json_object_object_add(req, "key", jstr_b64(end, fl));
	end[fl - 1]++;
	json_object_object_add(req, "range_end", jstr_b64(end, fl));
	free(end);
	return req;
}

static int etcd_range(struct rdzv_store *s, const char *prefix, bool keys_only,
		      struct rdzv_kv **out, size_t *n_out, uint64_t deadline)
{
	json_object *req = range_req(s, prefix), *resp = NULL, *kvs;
	struct rdzv_kv *v = NULL;
	size_t n = 0;
	int ret;

	if (!req)
		return -ENOMEM;
	if (keys_only)
		json_object_object_add(req, "keys_only", json_object_new_boolean(1));
	ret = request(s, "/v3/kv/range", req, deadline, &resp);
	json_object_put(req);
	if (ret)
		return ret;
	if (json_object_object_get_ex(resp, "kvs", &kvs) && json_object_array_length(kvs) > 0) {
		size_t cnt = json_object_array_length(kvs);

		v = calloc(cnt, sizeof(*v));
		if (!v) {
			json_object_put(resp);
			return -ENOMEM;
		}
		for (size_t i = 0; i < cnt; i++) {
			json_object *kv = json_object_array_get_idx(kvs, i), *k, *val;
			uint8_t *kb;
			size_t kl;

			kb = NULL;
			if (!json_object_object_get_ex(kv, "key", &k) ||
			    b64_decode(json_object_get_string(k), &kb, &kl) ||
			    kl < s->prefix_len || memcmp(kb, s->prefix, s->prefix_len)) {
				free(kb);
				ret = -EBADMSG;
				snprintf(s->err, sizeof(s->err), "etcd returned a key outside %s%s",
					 s->prefix, prefix);
				break;
			}
			memmove(kb, kb + s->prefix_len, kl - s->prefix_len + 1);
			v[n].key = (char *)kb;
			v[n].lease = get_i64(kv, "lease");
			n++;
			if (!keys_only) {
				/* An empty value is left out of etcd's answer. */
				if (json_object_object_get_ex(kv, "value", &val)) {
					ret = b64_decode(json_object_get_string(val), &v[n - 1].val,
							 &v[n - 1].len);
					if (ret) {
						snprintf(s->err, sizeof(s->err),
							 "etcd returned a value that is not base64 for %s%s",
							 s->prefix, v[n - 1].key);
						break;
					}
				}
			}
		}
	}
	json_object_put(resp);
	if (ret) {
		rdzv_kv_free(v, n);
		return ret;
	}
	*out = v;
	*n_out = n;
	return 0;
}

static int etcd_count(struct rdzv_store *s, const char *prefix, size_t *n_out, uint64_t deadline)
{
	json_object *req = range_req(s, prefix), *resp = NULL;
	int ret;

	if (!req)
		return -ENOMEM;
	json_object_object_add(req, "count_only", json_object_new_boolean(1));
	json_object_object_add(req, "serializable", json_object_new_boolean(1));
	ret = request(s, "/v3/kv/range", req, deadline, &resp);
	json_object_put(req);
	if (ret)
		return ret;
	*n_out = (size_t)get_i64(resp, "count");
	json_object_put(resp);
	return 0;
}

static void etcd_close(struct rdzv_store *s)
{
	if (!s)
		return;
	if (s->curl)
		cu.easy_cleanup(s->curl);
	for (unsigned i = 0; i < s->n_endpoints; i++)
		free(s->endpoints[i]);
	free(s->prefix);
	free(s->body);
	free(s);
}

static struct rdzv_store *etcd_new(const char *job)
{
	struct rdzv_store *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	if (pthread_once(&curl_once, curl_init) || !curl_ok)
		goto fail;
	s->curl = cu.easy_init();
	if (!s->curl)
		goto fail;
	/* No signals (threads); no proxy from the environment: etcd is on
	 * the cluster's network, and an http_proxy meant for the internet
	 * would swallow its requests. */
	cu.easy_setopt(s->curl, CURLOPT_NOSIGNAL, 1L);
	cu.easy_setopt(s->curl, CURLOPT_NOPROXY, "*");
	cu.easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, on_body);
	cu.easy_setopt(s->curl, CURLOPT_WRITEDATA, s);
	cu.easy_setopt(s->curl, CURLOPT_TCP_NODELAY, 1L);
	if (asprintf(&s->prefix, "/xfer/%s/", job) < 0) {
		s->prefix = NULL;
		goto fail;
	}
	s->prefix_len = strlen(s->prefix);
	return s;
fail:
	etcd_close(s);
	return NULL;
}

/* where: "host:port[,host:port...]". The URL is checked before libcurl is
 * loaded: a bad one is -EINVAL on a node without libcurl too. */
static int etcd_open(const char *where, const char *job, uint64_t deadline,
		     struct rdzv_store **out, char *err, size_t errlen)
{
	struct {
		const char *p;
		size_t len;
	} ep[MAX_ENDPOINTS];
	unsigned n = 0;
	struct rdzv_store *s;
	const char *p = where;

	while (*p) {
		const char *comma = strchr(p, ','), *colon;
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char *end;
		unsigned long port;

		colon = memrchr(p, ':', len);
		if (len == 0 || !colon || colon == p || n == MAX_ENDPOINTS) {
			snprintf(err, errlen, "etcd URL etcd://%s: endpoint %u is not host:port "
				 "(at most %d endpoints)", where, n + 1, MAX_ENDPOINTS);
			return -EINVAL;
		}
		port = strtoul(colon + 1, &end, 10);
		if (end != p + len || colon + 1 == end || port == 0 || port > 65535) {
			snprintf(err, errlen, "etcd URL etcd://%s: bad port in '%.*s'", where,
				 (int)len, p);
			return -EINVAL;
		}
		ep[n].p = p;
		ep[n].len = len;
		n++;
		p += len;
		if (*p == ',')
			p++;
	}
	if (n == 0) {
		snprintf(err, errlen, "etcd URL etcd://%s names no endpoint", where);
		return -EINVAL;
	}
	s = etcd_new(job);
	if (!s) {
		pthread_once(&curl_once, curl_init);
		if (!curl_ok) {
			snprintf(err, errlen, "etcd://%s: libcurl.so.4 cannot be loaded (Debian: "
				 "libcurl4); the file store (file://) does not need it", where);
			return -ELIBACC;
		}
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		if (asprintf(&s->endpoints[i], "http://%.*s", (int)ep[i].len, ep[i].p) < 0) {
			etcd_close(s);
			return -ENOMEM;
		}
		s->n_endpoints++;
	}
	(void)deadline;   /* nothing is sent until the first request */
	*out = s;
	return 0;
}

static int etcd_clone(struct rdzv_store *s, struct rdzv_store **out)
{
	struct rdzv_store *c;
	char *job;

	/* prefix is "/xfer/<job>/" */
	job = strndup(s->prefix + 6, s->prefix_len - 7);
	if (!job)
		return -ENOMEM;
	c = etcd_new(job);
	free(job);
	if (!c)
		return -ENOMEM;
	for (unsigned i = 0; i < s->n_endpoints; i++) {
		c->endpoints[i] = strdup(s->endpoints[i]);
		if (!c->endpoints[i]) {
			etcd_close(c);
			return -ENOMEM;
		}
		c->n_endpoints++;
	}
	c->cur = s->cur;
	*out = c;
	return 0;
}

const struct rdzv_store_ops rdzv_etcd_ops = {
	.scheme = "etcd://",
	.open = etcd_open,
	.clone = etcd_clone,
	.close = etcd_close,
	.grant = etcd_grant,
	.keepalive = etcd_keepalive,
	.revoke = etcd_revoke,
	.create = etcd_create,
	.put = etcd_put,
	.range = etcd_range,
	.count = etcd_count,
	.error = etcd_error,
};
