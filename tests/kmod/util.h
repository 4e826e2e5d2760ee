/* SPDX-License-Identifier: GPL-2.0 */
/* Helpers shared by the guest test programs: memory patterns, sysfs,
 * debugfs and /proc/vmstat readers. */
#ifndef XFER_TEST_UTIL_H
#define XFER_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG 4096UL

static inline void *anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0, len);
	return p;
}

static inline void fill(void *p, size_t len, uint32_t seed)
{
	uint32_t *w = p;

	for (size_t i = 0; i < len / 4; i++)
		w[i] = seed + (uint32_t)i * 2654435761u;
}

static inline int check(const void *p, size_t len, uint32_t seed)
{
	const uint32_t *w = p;

	for (size_t i = 0; i < len / 4; i++)
		if (w[i] != seed + (uint32_t)i * 2654435761u)
			return 0;
	return 1;
}

static inline long long read_ll(const char *path)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return atoll(buf);
}

static inline long long sysfs(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "/sys/class/misc/xfer/%s", name);
	return read_ll(path);
}

static inline int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, strlen(s));
	close(fd);
	return n < 0 ? -errno : 0;
}

static inline char *slurp(const char *path)
{
	static char buf[65536];
	int fd = open(path, O_RDONLY);
	size_t len = 0;
	ssize_t n;

	buf[0] = 0;
	if (fd < 0)
		return buf;
	while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += n;
	buf[len] = 0;
	close(fd);
	return buf;
}

/* Exact values: fold the per-cpu counter deltas first (root only). */
static inline long long vmstat(const char *key)
{
	char *s, *p;
	size_t kl = strlen(key);

	write_str("/proc/sys/vm/stat_refresh", "1");
	s = slurp("/proc/vmstat");

	for (p = s; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, key, kl) && p[kl] == ' ')
			return atoll(p + kl + 1);
	return -1;
}

/* Everything the module holds is gone. */
static inline int module_idle(void)
{
	return sysfs("regions") == 0 && sysfs("contexts") == 0 && sysfs("shares") == 0 &&
	       sysfs("exports") == 0 && sysfs("pinned_bytes") == 0 &&
	       sysfs("imported_bytes") == 0;
}

static inline int pins_balanced(void)
{
	return vmstat("nr_foll_pin_acquired") == vmstat("nr_foll_pin_released");
}

#endif
