/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <rdma/fabric.h>

#include "xfer.h"
#include "provider.h"

/* xfer's own backends, which libfabric does not list. */
static const char *const own[] = { "verbs", "local" };

static bool libfabric_knows(const char *prov)
{
	struct fi_info *hints = fi_allocinfo(), *info = NULL;
	bool known;

	if (!hints)
		return true;     /* cannot tell: do not claim it is unknown */
	hints->fabric_attr->prov_name = strdup(prov);
	known = fi_getinfo(FI_VERSION(1, 9), NULL, NULL, 0, hints, &info) == 0;
	fi_freeinfo(info);
	fi_freeinfo(hints);
	return known;
}

static void append(char *buf, size_t len, const char *s)
{
	size_t n = strlen(buf);

	if (n < len)
		snprintf(buf + n, len - n, "%s", s);
}

int provider_each_libfabric(void (*fn)(const char *name, void *ctx), void *ctx)
{
	struct fi_info *all = NULL;
	int n = 0;

	/* with no hints fi_getinfo lists every provider, one entry per
	 * interface: name each provider once */
	if (fi_getinfo(FI_VERSION(1, 9), NULL, NULL, 0, NULL, &all))
		return 0;
	for (struct fi_info *i = all; i; i = i->next) {
		const char *name = i->fabric_attr->prov_name;
		bool seen = false;

		for (struct fi_info *j = all; j != i && !seen; j = j->next)
			seen = !strcmp(j->fabric_attr->prov_name, name);
		if (!seen) {
			fn(name, ctx);
			n++;
		}
	}
	fi_freeinfo(all);
	return n;
}

struct words {
	char *buf;
	size_t len;
	int n;
};

static void append_word(const char *name, void *ctx)
{
	struct words *w = ctx;

	append(w->buf, w->len, w->n++ ? ", " : " ");
	append(w->buf, w->len, name);
}

void provider_explain(const char *prov, int err, char *buf, size_t len)
{
	struct words w = { buf, len, 0 };

	snprintf(buf, len, "provider '%s': %s", prov ? prov : "(default)", xfer_strerror(err));
	if (!prov)
		return;
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (!strcmp(prov, own[i]))
			return;
	if (libfabric_knows(prov))
		return;
	append(buf, len, " (no such provider here; available:");
	provider_each_libfabric(append_word, &w);
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		append_word(own[i], &w);
	append(buf, len, ")");
}

int provider_probe(const char *prov, uint32_t rails, char *err, size_t len)
{
	int fd[2], st = 0;
	ssize_t n, got = 0;
	pid_t pid;

	err[0] = 0;
	if (pipe(fd))
		return -errno;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		struct xfer_engine_attr a;
		xfer_engine *e;
		char msg[512] = "";
		int ret;

		close(fd[0]);
		xfer_engine_attr_init(&a);
		a.provider = prov;
		if (rails)
			a.num_rails = rails;
		a.node = "127.0.0.1";
		ret = xfer_engine_create(&a, &e);
		if (ret)
			provider_explain(prov, ret, msg, sizeof(msg));
		else
			xfer_engine_destroy(e);
		if (write(fd[1], msg, strlen(msg)) < 0)
			_exit(2);
		_exit(ret ? 1 : 0);
	}
	close(fd[1]);
	while (pid > 0 && (size_t)got < len - 1 && (n = read(fd[0], err + got, len - 1 - (size_t)got)) > 0)
		got += n;
	err[got] = 0;
	close(fd[0]);
	if (pid < 0)
		return -errno;
	waitpid(pid, &st, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (!err[0])
		snprintf(err, len, "provider '%s': opening an engine failed (status %d)", prov, st);
	return -EINVAL;
}
