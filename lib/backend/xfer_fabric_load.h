/* SPDX-License-Identifier: MIT */
/* libfabric, loaded on first use (fabric_load.c says why). */
#ifndef XFER_FABRIC_LOAD_H
#define XFER_FABRIC_LOAD_H

/* 0 once libfabric is loaded; -ELIBACC when it is not installed (or not
 * the one this library was built for). Loads it on the first call. */
int xfer_fabric_load(void);

#endif
