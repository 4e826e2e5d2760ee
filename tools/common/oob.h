/* SPDX-License-Identifier: MIT */
/* Out-of-band exchange for tools: framed messages over TCP (two machines,
 * as perftest does) or a socketpair (a peer process the tool forks itself). */
#ifndef XFER_TOOLS_OOB_H
#define XFER_TOOLS_OOB_H

#include <stddef.h>
#include <stdint.h>

/* A listening fd on node (an IPv4 address or name; NULL: every address),
 * or -errno. */
int oob_listen(const char *node, uint16_t port);
int oob_accept(int lfd);                        /* one connection */
/* Connect to host, from the address node when not NULL (the interface the
 * peer is to see), retrying while the server is not listening yet. */
int oob_connect(const char *host, uint16_t port, const char *node, int timeout_ms);
int oob_send(int fd, const void *buf, uint32_t len);
/* Receive one message into buf (at most cap bytes); returns its length or -errno. */
int oob_recv(int fd, void *buf, uint32_t cap);
int oob_send_u64(int fd, uint64_t v);
int oob_recv_u64(int fd, uint64_t *v);

#endif
