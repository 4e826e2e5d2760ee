/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "oob.h"

/* node as an IPv4 socket address (port 0 unless given). */
static int resolve(const char *node, uint16_t port, struct sockaddr_in *sa)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res;

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	if (!node) {
		sa->sin_addr.s_addr = htonl(INADDR_ANY);
		return 0;
	}
	if (getaddrinfo(node, NULL, &hints, &res))
		return -EADDRNOTAVAIL;
	sa->sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
	freeaddrinfo(res);
	return 0;
}

int oob_listen(const char *node, uint16_t port)
{
	struct sockaddr_in sa;
	int one = 1, fd, ret = resolve(node, port, &sa);

	if (ret)
		return ret;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 16)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int oob_accept(int lfd)
{
	int one = 1, fd = accept(lfd, NULL, NULL);

	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int oob_connect(const char *host, uint16_t port, const char *node, int timeout_ms)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res;
	struct sockaddr_in src;
	char service[8];
	int one = 1, fd = -1, ret;
	struct timespec ts = { 0, 100 * 1000000 };

	snprintf(service, sizeof(service), "%u", port);
	ret = getaddrinfo(host, service, &hints, &res);
	if (ret)
		return -EHOSTUNREACH;
	if (node && (ret = resolve(node, 0, &src))) {
		freeaddrinfo(res);
		return ret;
	}
	/* The server may not be listening yet: retry until the timeout. */
	for (int waited = 0; waited <= timeout_ms; waited += 100) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			break;
		if (node && bind(fd, (struct sockaddr *)&src, sizeof(src))) {
			ret = -errno;   /* not an address of this host: no retry helps */
			close(fd);
			freeaddrinfo(res);
			return ret;
		}
		if (connect(fd, res->ai_addr, res->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -ECONNREFUSED;
		nanosleep(&ts, NULL);
	}
	freeaddrinfo(res);
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int full_io(int fd, void *buf, size_t len, int is_send)
{
	char *p = buf;

	while (len) {
		ssize_t n = is_send ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? -ECONNRESET : -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int oob_send(int fd, const void *buf, uint32_t len)
{
	int ret = full_io(fd, &len, sizeof(len), 1);

	return ret ? ret : full_io(fd, (void *)buf, len, 1);
}

int oob_recv(int fd, void *buf, uint32_t cap)
{
	uint32_t len;
	int ret = full_io(fd, &len, sizeof(len), 0);

	if (ret)
		return ret;
	if (len > cap)
		return -EMSGSIZE;
	ret = full_io(fd, buf, len, 0);
	return ret ? ret : (int)len;
}

int oob_send_u64(int fd, uint64_t v)
{
	return oob_send(fd, &v, sizeof(v));
}

int oob_recv_u64(int fd, uint64_t *v)
{
	int ret = oob_recv(fd, v, sizeof(*v));

	return ret == sizeof(*v) ? 0 : (ret < 0 ? ret : -EPROTO);
}
