/* SPDX-License-Identifier: MIT */
#ifndef XFER_TOOLS_MODELS_H
#define XFER_TOOLS_MODELS_H

#include <stddef.h>

/* The config file --model names: a path with a slash is used as given;
 * a name (with or without .json) is looked up in $XFER_DATADIR/models, then
 * <dir of the executable>/../share/xfer/models (installed), then
 * <dir of the executable>/../../models (the build tree: build/bin/../../models).
 * 0 and the path in buf, or -ENOENT and the places looked in in err. */
int model_find(const char *name, char *buf, size_t len, char *err, size_t errlen);

#endif
