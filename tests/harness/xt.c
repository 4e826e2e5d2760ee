/* SPDX-License-Identifier: MIT */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "xt.h"

int xt_providers(const char *out[], int max)
{
	static char buf[256];
	const char *env = getenv("XFER_TEST_PROVIDERS");
	char *save = NULL, *tok;
	int n = 0;

	if (!env || !*env) {
		out[n++] = "shm";
		if (max > 1)
			out[n++] = "tcp;ofi_rxm";
		if (max > 2)
			out[n++] = "local";
		return n;
	}
	snprintf(buf, sizeof(buf), "%s", env);
	for (tok = strtok_r(buf, " ", &save); tok && n < max; tok = strtok_r(NULL, " ", &save))
		out[n++] = tok;
	return n;
}

const char *xt_transport_skip(const char *prov)
{
	static char why[160];
	const char *provs[8];
	int n = xt_providers(provs, 8), i;

	for (i = 0; i < n && strcmp(provs[i], prov) != 0; i++)
		;
	if (i == n) {
		snprintf(why, sizeof(why), "%s is not among the providers tested here (XFER_TEST_PROVIDERS)",
			 prov);
		return why;
	}
	if (!xt_provider_available(prov)) {
		snprintf(why, sizeof(why), "no engine opens on %s here", prov);
		return why;
	}
	return NULL;
}

bool xt_provider_available(const char *prov)
{
	/* as a user finds out: an engine opens on it or not */
	xfer_engine *e = NULL;
	int ret = xt_engine(prov, 1, 1000, &e);

	xfer_engine_destroy(e);
	return ret == 0;
}

void xt_warm_fabric(void)
{
	static bool done;
	const char *provs[8];
	int n = xt_providers(provs, 8), i;
	void *h;
	uint32_t (*version)(void);
	int (*getinfo)(uint32_t, const char *, const char *, uint64_t, const void *, void **);
	void (*freeinfo)(void *);
	void *info = NULL;

	if (done)
		return;
	done = true;
	for (i = 0; i < n; i++)
		if (strcmp(provs[i], "local") != 0 && strcmp(provs[i], "verbs") != 0)
			break;
	if (i == n)
		return;   /* no libfabric provider among those tested */
	/* The library's own soname (lib/backend/fabric_load.c): dlopen of a
	 * loaded library returns the same one, initialised. */
	h = dlopen("libfabric.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return;   /* the cases find out and skip, saying why */
	*(void **)&version = dlsym(h, "fi_version");
	*(void **)&getinfo = dlsym(h, "fi_getinfo");
	*(void **)&freeinfo = dlsym(h, "fi_freeinfo");
	if (version && getinfo && freeinfo && getinfo(version(), NULL, NULL, 0, NULL, &info) == 0)
		freeinfo(info);
	/* never closed: the library keeps its providers, as libxfer does */
}

int xt_engine(const char *prov, uint32_t rails, uint32_t timeout_ms, xfer_engine **e)
{
	struct xfer_engine_attr a;

	xfer_engine_attr_init(&a);
	a.provider = prov;
	a.num_rails = rails;
	a.peer_timeout_ms = timeout_ms;
	a.node = "127.0.0.1";
	a.devices = getenv("XFER_TEST_DEVICES");
	a.idle_spin_us = 200;   /* many processes share two cores in tests */
	return xfer_engine_create(&a, e);
}

int xt_spawn(struct xt_peer *p, int (*fn)(int fd, void *arg), void *arg)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		return -errno;
	fflush(NULL);
	p->pid = fork();
	if (p->pid < 0)
		return -errno;
	if (p->pid == 0) {
		close(sv[0]);
		_exit(fn(sv[1], arg));
	}
	close(sv[1]);
	p->fd = sv[0];
	return 0;
}

int xt_reap(struct xt_peer *p)
{
	int st = 0;

	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	if (waitpid(p->pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int xt_send(int fd, const void *buf, size_t len)
{
	return send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -EIO;
}

ssize_t xt_recv(int fd, void *buf, size_t cap)
{
	ssize_t n = recv(fd, buf, cap, 0);

	return n > 0 ? n : -1;
}

int xt_send_u64(int fd, uint64_t v)
{
	return xt_send(fd, &v, sizeof(v));
}

int xt_recv_u64(int fd, uint64_t *v)
{
	return xt_recv(fd, v, sizeof(*v)) == sizeof(*v) ? 0 : -EIO;
}

int xt_connect(xfer_engine *e, int fd, uint32_t *peer)
{
	uint8_t mine[XFER_ADDR_MAX], theirs[XFER_ADDR_MAX];
	size_t len = sizeof(mine);
	ssize_t n;
	int ret;

	ret = xfer_engine_address(e, mine, &len);
	if (ret)
		return ret;
	if (xt_send(fd, mine, len))
		return -EIO;
	n = xt_recv(fd, theirs, sizeof(theirs));
	if (n < 0)
		return -EIO;
	return xfer_engine_add_peer(e, theirs, (size_t)n, peer);
}

int xt_send_mr(int fd, xfer_mr *mr)
{
	uint8_t d[XFER_DESC_MAX];
	size_t len = sizeof(d);
	int ret = xfer_mr_descriptor(mr, d, &len);

	return ret ? ret : xt_send(fd, d, len);
}

int xt_recv_rmr(xfer_engine *e, uint32_t peer, int fd, xfer_rmr **rmr)
{
	uint8_t d[XFER_DESC_MAX];
	ssize_t n = xt_recv(fd, d, sizeof(d));

	if (n < 0)
		return -EIO;
	return xfer_rmr_import(e, peer, d, (size_t)n, rmr);
}

void xt_fill(void *buf, uint64_t len, uint64_t seed, uint64_t start)
{
	uint8_t *p = buf;

	for (uint64_t i = 0; i < len; i++)
		p[i] = xt_byte(seed, start + i);
}

int64_t xt_verify(const void *buf, uint64_t len, uint64_t seed, uint64_t start)
{
	const uint8_t *p = buf;

	for (uint64_t i = 0; i < len; i++)
		if (p[i] != xt_byte(seed, start + i))
			return (int64_t)i;
	return -1;
}

void *xt_alloc(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len ? len : 1))
		return NULL;
	memset(p, 0, len);
	return p;
}

uint64_t xt_now_us(void)
{
	return xfer_now_ns() / 1000;
}

int xt_tool_path(const char *name, char *buf, size_t len)
{
	const char *b = getenv("XFER_BUILD");

	snprintf(buf, len, "%s/bin/%s", b ? b : "build", name);
	return access(buf, X_OK) ? -1 : 0;
}

int xt_run_tool(const char *tool, const char *args, char *out, size_t len)
{
	char cmd[2048];
	size_t n = 0, got;
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd), "%s %s 2>/dev/null", tool, args);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	while (n + 1 < len && (got = fread(out + n, 1, len - n - 1, p)) > 0)
		n += got;
	out[n] = 0;
	st = pclose(p);
	return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
