/* SPDX-License-Identifier: MIT */
/*
 * Size-first structs: every growable struct of the public API starts with
 * `uint32_t size`, which the caller sets to sizeof the struct as its header
 * declared it. The library may be newer or older than that header, so each
 * entry point copies the caller's struct into one of its own version with
 * these helpers (the rule of Linux's copy_struct_from_user):
 *
 *  in (the caller's struct is read):
 *   - size < the struct's minimum (its _SIZE_VER0: the fields that have no
 *     default) is -EINVAL; so is 0;
 *   - a shorter struct (an older caller) is copied as far as it goes; the
 *     fields past its size keep the defaults the library put in its copy;
 *   - a longer struct (a newer caller) is accepted when every byte past the
 *     library's sizeof is zero (a newer field left at zero asks for nothing
 *     this library would not do); one non-zero byte there is -E2BIG, since
 *     silently ignoring a feature the caller asked for is worse than failing;
 *   - size > XFER_STRUCT_SIZE_MAX is -E2BIG: no struct will grow that far,
 *     and it keeps a garbage size from making us read far past the object;
 *   - the copy's size is set to the library's sizeof; on error the copy
 *     holds its defaults and nothing else.
 *
 * out (the library fills the caller's struct, e.g. a query):
 *   - the same -EINVAL / -E2BIG bounds on the caller's size;
 *   - min(caller's size, library's sizeof) bytes are written and the size
 *     field is set to that count, so a newer caller can tell which of its
 *     fields this library filled; bytes past the library's sizeof are
 *     zeroed, so none of them hold stale data that looks like an answer.
 *
 * A size that ends inside a field copies that field's leading bytes: only a
 * corrupted size does that (every header's sizeof ends on a field boundary).
 */
#ifndef XFER_UTIL_STRUCT_COPY_H
#define XFER_UTIL_STRUCT_COPY_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define XFER_STRUCT_SIZE_MAX 4096u

/* The caller's size field; memcpy, since only its first 4 bytes are known
 * to exist until the size has been checked. */
static inline uint32_t xfer_struct_size(const void *ustruct)
{
	uint32_t size;

	memcpy(&size, ustruct, sizeof(size));
	return size;
}

static inline bool xfer_struct_zeroed(const void *p, size_t from, size_t to)
{
	const uint8_t *b = p;

	for (size_t i = from; i < to; i++)
		if (b[i])
			return false;
	return true;
}

/* Bounds of a caller's size, shared by both directions. */
static inline int xfer_struct_size_check(uint32_t usize, size_t min)
{
	if (usize < sizeof(uint32_t) || usize < min)
		return -EINVAL;
	if (usize > XFER_STRUCT_SIZE_MAX)
		return -E2BIG;
	return 0;
}

/*
 * Copy the caller's struct `ustruct` into the library's `kstruct` of ksize
 * bytes, which already holds the struct's defaults. min is the struct's
 * _SIZE_VER0. 0, -EINVAL or -E2BIG (see above).
 */
static inline int xfer_struct_copy_in(void *kstruct, size_t ksize, const void *ustruct,
				      size_t min)
{
	uint32_t usize = xfer_struct_size(ustruct);
	uint32_t ksize32 = (uint32_t)ksize;
	int ret = xfer_struct_size_check(usize, min);

	if (ret)
		return ret;
	if (usize > ksize && !xfer_struct_zeroed(ustruct, ksize, usize))
		return -E2BIG;
	memcpy(kstruct, ustruct, usize < ksize ? usize : ksize);
	memcpy(kstruct, &ksize32, sizeof(ksize32));
	return 0;
}

/*
 * Fill the caller's struct `ustruct` (its size field set by the caller) from
 * the library's `kstruct` of ksize bytes. 0, -EINVAL or -E2BIG; on error the
 * caller's struct is untouched.
 */
static inline int xfer_struct_copy_out(void *ustruct, const void *kstruct, size_t ksize,
				       size_t min)
{
	uint32_t usize = xfer_struct_size(ustruct);
	uint32_t n = usize < ksize ? usize : (uint32_t)ksize;
	int ret = xfer_struct_size_check(usize, min);

	if (ret)
		return ret;
	memcpy(ustruct, kstruct, n);
	if (usize > ksize)
		memset((uint8_t *)ustruct + ksize, 0, usize - ksize);
	memcpy(ustruct, &n, sizeof(n));
	return 0;
}

/*
 * The library fills a struct the caller owns with no size set yet (an init
 * function, a parser): usize is sizeof the struct in the caller's header,
 * passed by the header's macro. Writes min(usize, ksize) bytes of kstruct and
 * sets the size field to usize, so the struct then passes copy_in as the
 * caller's own version; bytes past ksize (a newer caller's fields) are left
 * as they are. Nothing is written past usize: an older caller's struct is
 * never overrun by a newer library.
 */
static inline void xfer_struct_fill(void *ustruct, size_t usize, const void *kstruct, size_t ksize)
{
	uint32_t usize32 = (uint32_t)usize;

	if (usize < sizeof(uint32_t))
		return;
	memcpy(ustruct, kstruct, usize < ksize ? usize : ksize);
	memcpy(ustruct, &usize32, sizeof(usize32));
}

/* An init call: the caller's struct of usize bytes holds the library's
 * defaults kstruct, and zeros in a newer caller's fields (0 asks for
 * nothing). */
static inline void xfer_struct_init(void *ustruct, size_t usize, const void *kstruct, size_t ksize)
{
	memset(ustruct, 0, usize);
	xfer_struct_fill(ustruct, usize, kstruct, ksize);
}

#endif
