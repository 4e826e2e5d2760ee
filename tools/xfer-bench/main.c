/* SPDX-License-Identifier: MIT */
/*
 * xfer-bench: bandwidth, rate and latency of xfer's operations, optionally
 * beside the same measurements posted with plain libfabric (--raw).
 *
 *   xfer-bench                      loopback: forks its own peers, shm
 *   xfer-bench --server [-P port]   wait for a client (two machines)
 *   xfer-bench --client HOST        run the tests against a server
 *
 * The initiator drives everything; the targets answer its commands (wait
 * for immediates, answer pings, check what landed, write back). Across
 * hosts each side binds its engine (and the out-of-band socket) to --node,
 * by default to the address its out-of-band connection runs over: an
 * address the other host reaches, never loopback. This file holds the
 * roles; bench.h says where the rest lives.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "oob.h"

struct out bench_out;

void die(const char *what, int err)
{
	out_fail(&bench_out, 0, "%s: %s", what, xfer_strerror(err < 0 ? err : -err));
	exit(1);
}

static void initiator(struct opts *o, int *fds, int nfds, const char *node)
{
	struct bench b = { .o = o, .nfds = nfds, .out = &bench_out, .salt = 0 };
	struct config_msg cfg = { .rails = o->rails, .raw = o->raw, .region = o->region };
	struct cmd_msg quit = { .cmd = CMD_QUIT };
	time_t now = time(NULL);
	char date[32];

	memcpy(b.fds, fds, (size_t)nfds * sizeof(int));
	snprintf(cfg.provider, sizeof(cfg.provider), "%s", o->provider);
	side_open(&b.s, o, o->provider, o->rails, node, o->region, o->raw, b.salt);
	for (int k = 0; k < nfds; k++) {
		if (oob_send(fds[k], &cfg, sizeof(cfg)))
			die("peer", -EPROTO);
		side_exchange(&b.s, fds[k]);
	}
	struct xfer_engine_info info = { .size = sizeof(info) };

	xfer_engine_query(b.s.e, &info);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	out_str(b.out, "provider", info.provider);
	out_u64(b.out, "rails", info.num_rails);
	json_object *names = json_object_new_array();

	for (uint32_t i = 0; i < info.num_rails; i++)
		json_object_array_add(names, json_object_new_string(info.rail_names[i]));
	out_set(b.out, "devices", names);
	out_str(b.out, "date", date);
	if (o->verbose) {
		/* what each side published, as libfabric reads it: across hosts
		 * these must name addresses the other host reaches */
		uint8_t addr[XFER_ADDR_MAX];
		size_t alen = sizeof(addr);

		if (xfer_engine_address(b.s.e, addr, &alen) == 0)
			out_set(b.out, "addresses", addr_describe(info.provider, node, addr, alen));
		out_set(b.out, "peer_addresses", addr_describe(info.provider, node, b.s.peer_addr,
								b.s.peer_len));
	}
	out_u64(b.out, "region_bytes", o->region);
	/* rows name the provider the engine chose (a default resolved) */
	snprintf(o->provider_used, sizeof(o->provider_used), "%s", info.provider);
	o->provider = o->provider_used;
	if (o->tests & (1u << T_SINGLE))
		test_single(&b);
	if (o->tests & (1u << T_PAGED))
		test_paged(&b);
	if (o->tests & (1u << T_IMM))
		test_imm(&b);
	if (o->tests & (1u << T_SCATTER))
		test_scatter(&b);
	if (o->tests & (1u << T_KV))
		test_kv(&b);
	if (o->tests & (1u << T_PEERS))
		test_peers(&b);
	/* last: it leaves target 0 on a fresh engine */
	if (o->tests & (1u << T_FIRST))
		test_first(&b);
	for (int k = 0; k < nfds; k++)
		oob_send(fds[k], &quit, sizeof(quit));
	side_close(&b.s);
	out_finish(b.out);
}

/*
 * --rdzv: two processes a launcher started (or --rank/--world-size), one
 * pair: rank 1 is the target, listening on its --node address (a free
 * port), rank 0 the initiator; they find each other through the store, then
 * run as --server and --client do. Rank 0 prints the document; both end
 * at the store's end barrier.
 */
static int launched(struct opts *o)
{
	static struct launch l;
	const struct xfer_rdzv_blob *all;
	char err[512], addr[96], host[64];
	unsigned port;
	int lfd = -1, fd, rc, n;

	if ((rc = launch_settle(&o->launch, &l, err, sizeof(err))))
		return out_fail(&bench_out, 0, "%s", err);
	if (l.world != 2)
		return out_fail(&bench_out, 0, "world size %u (%s): xfer-bench runs one pair, rank 0 "
				"the initiator and rank 1 the target: world size 2", l.world, l.source);
	if ((rc = launch_join(&o->launch, 60000, &l, err, sizeof(err)))) {
		return out_fail(&bench_out, 0, "%s", err);
	}
	if (o->gpu < 0)
		o->gpu = l.gpu;   /* the local rank's GPU, on a host with GPUs */
	if (l.rank == 1) {
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);

		lfd = oob_listen(l.node, 0);
		if (lfd < 0 || getsockname(lfd, (struct sockaddr *)&sa, &sl))
			rc = lfd < 0 ? lfd : -errno;
		n = snprintf(addr, sizeof(addr), "%s %u", l.node, rc ? 0 : ntohs(sa.sin_port));
	} else {
		n = snprintf(addr, sizeof(addr), "%s 0", l.node);
	}
	snprintf(err, sizeof(err), "listen on %s: %s", l.node, xfer_strerror(rc));
	if ((rc = launch_exchange(&l, "oob", rc, err, addr, (size_t)n + 1, &all, err, sizeof(err))))
		return out_fail(&bench_out, 0, "%s", err);
	if (l.rank == 1) {
		struct pollfd pfd = { .fd = lfd, .events = POLLIN };

		/* rank 0 got our address: it connects now, or it died */
		if (poll(&pfd, 1, 30000) <= 0)
			return out_fail(&bench_out, 0, "rank 0 did not connect to %s port %s within 30 s "
					"(it died or cannot reach this address: --node)", l.node,
					strchr(addr, ' ') + 1);
		fd = oob_accept(lfd);
		close(lfd);
		if (fd < 0)
			die("accept", fd);
		bench_out.json = false;   /* the initiator prints the results */
		rc = target_main(o, fd, 1, l.node);
	} else {
		if (sscanf((const char *)all[1].data, "%63s %u", host, &port) != 2 || !port ||
		    port > 65535)
			return out_fail(&bench_out, 0, "rank 1's address '%.80s' is not 'host port'",
					(const char *)all[1].data);
		fd = oob_connect(host, (uint16_t)port, l.node, 10000);
		if (fd < 0) {
			snprintf(err, sizeof(err), "connect to rank 1 at %s port %u from %s", host, port,
				 l.node);
			die(err, fd);
		}
		o->scatter_peers = 1;
		out_str(&bench_out, "launcher", l.source);
		out_str(&bench_out, "job", l.job);
		out_str(&bench_out, "node", l.node);
		out_str(&bench_out, "peer_node", host);
		initiator(o, &fd, 1, l.node);
		rc = 0;
	}
	if (launch_close(&l, err, sizeof(err))) {
		fprintf(stderr, "xfer-bench: rank %u: %s\n", l.rank, err);
		return 1;
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o = { .provider = NULL, .rails = 1, .gpu = -1, .scatter_peers = 3, .reps = 1 };
	char local_ip[64];
	bool exit_now;
	int rc;

	out_init(&bench_out, "xfer-bench");
	launch_opts_init(&o.launch);
	rc = bench_options(argc, argv, &o, &bench_out, &exit_now);
	if (rc || exit_now) {
		out_finish(&bench_out);
		return rc;
	}
	/* a peer that goes away is an error returned by send(), not a signal */
	signal(SIGPIPE, SIG_IGN);

	if (o.launch.url)
		return launched(&o);
	if (o.server) {
		int lfd = oob_listen(o.node, o.port), fd;

		if (lfd < 0) {
			char what[300];

			snprintf(what, sizeof(what), "listen on %s port %u", o.node ? o.node : "*",
				 o.port);
			die(what, lfd);
		}
		fd = oob_accept(lfd);
		if (fd < 0)
			die("accept", fd);
		close(lfd);
		bench_out.json = false;   /* the client prints the results */
		/* the address the client reached us on: it can reach the engine there */
		sock_local_ip(fd, local_ip, sizeof(local_ip));
		return target_main(&o, fd, 1, o.node ? o.node : local_ip);
	}
	if (o.client) {
		int fd = oob_connect(o.client, o.port, o.node, 10000);

		if (fd < 0) {
			char what[300];

			snprintf(what, sizeof(what), "connect to %s port %u%s%s", o.client, o.port,
				 o.node ? " from " : "", o.node ? o.node : "");
			die(what, fd);
		}
		o.scatter_peers = 1;
		sock_local_ip(fd, local_ip, sizeof(local_ip));
		initiator(&o, &fd, 1, o.node ? o.node : local_ip);
		return 0;
	}

	/* Loopback: fork the targets (scatter and peers use them all, the rest
	 * the first). */
	int fds[MAX_PEERS];
	pid_t pids[MAX_PEERS];
	int n = (o.tests & ((1u << T_SCATTER) | (1u << T_PEERS))) ? (int)o.scatter_peers : 1;
	int status = 0;
	const char *node = o.node ? o.node : "127.0.0.1";

	for (int k = 0; k < n; k++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			die("socketpair", -errno);
		fflush(NULL);
		pids[k] = fork();
		if (pids[k] == 0) {
			/* a target's errors go to stderr; the one document is the initiator's */
			bench_out.json = false;
			for (int j = 0; j < k; j++)
				close(fds[j]);
			close(sv[0]);
			_exit(target_main(&o, sv[1], k + 1, node));
		}
		close(sv[1]);
		fds[k] = sv[0];
	}
	initiator(&o, fds, n, node);
	for (int k = 0; k < n; k++) {
		int st;

		close(fds[k]);
		waitpid(pids[k], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			status = 1;
	}
	return status;
}
