/* SPDX-License-Identifier: MIT */
/* Attributes and small macros every layer of the library uses. */
#ifndef XFER_UTIL_COMPILER_H
#define XFER_UTIL_COMPILER_H

/* The library is built with -fvisibility=hidden: a function is part of
 * libxfer's ABI only when marked, and only once lib/xfer.map names it. */
#define XFER_EXPORT __attribute__((visibility("default")))

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

#endif
