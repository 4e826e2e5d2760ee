/* SPDX-License-Identifier: MIT */
/* Naming what is wrong when an engine cannot be opened on a provider. */
#ifndef XFER_TOOLS_PROVIDER_H
#define XFER_TOOLS_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

/* "provider 'P': <xfer_strerror(err)>", and when libfabric does not know P,
 * the providers this host has (libfabric's, then xfer's own verbs and
 * local) so the user can pick one. Only call it in a process that may
 * initialise libfabric (it calls fi_getinfo). */
void provider_explain(const char *prov, int err, char *buf, size_t len);

/* Open an engine on the provider (with rails rails; 0 = the default) in a
 * forked child, as every rank will: 0, or -errno with provider_explain's
 * text in err. A child, because libfabric is not fork-safe and a tool's
 * coordinator forks its ranks after this: it must open nothing itself. A
 * tool calls it first so that a provider that cannot open fails the run at
 * once, with its name and why, rather than as ranks found gone later. */
int provider_probe(const char *prov, uint32_t rails, char *err, size_t len);

/* fn(name, ctx) for each libfabric provider this host has, each named once
 * (fi_getinfo lists one entry per interface); the number named. */
int provider_each_libfabric(void (*fn)(const char *name, void *ctx), void *ctx);

#endif
