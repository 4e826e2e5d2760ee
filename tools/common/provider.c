/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
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

void provider_explain(const char *prov, int err, char *buf, size_t len)
{
	struct fi_info *all = NULL;
	int words = 0;

	snprintf(buf, len, "provider '%s': %s", prov ? prov : "(default)", xfer_strerror(err));
	if (!prov)
		return;
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (!strcmp(prov, own[i]))
			return;
	if (libfabric_knows(prov))
		return;
	append(buf, len, " (no such provider here; available:");
	/* with no hints fi_getinfo lists every provider, one entry per
	 * interface: name each provider once */
	if (fi_getinfo(FI_VERSION(1, 9), NULL, NULL, 0, NULL, &all) == 0) {
		for (struct fi_info *i = all; i; i = i->next) {
			const char *name = i->fabric_attr->prov_name;
			bool seen = false;

			for (struct fi_info *j = all; j != i && !seen; j = j->next)
				seen = !strcmp(j->fabric_attr->prov_name, name);
			if (seen)
				continue;
			append(buf, len, words++ ? ", " : " ");
			append(buf, len, name);
		}
		fi_freeinfo(all);
	}
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
		append(buf, len, words++ ? ", " : " ");
		append(buf, len, own[i]);
	}
	append(buf, len, ")");
}
