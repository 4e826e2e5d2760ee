// SPDX-License-Identifier: GPL-2.0
/*
 * Shares: a region its owner made openable by other local processes under
 * an access rule, by id. No ptrace rights and no fd passing are needed; the
 * opener's credentials are checked against the rule when it opens. A share
 * lives until its owner releases the region or exits.
 */
#include <linux/cred.h>
#include <linux/pid.h>
#include <linux/sched.h>
#include <linux/slab.h>

#include "xfer_priv.h"

/* Next share id to try; under xfer_lock. */
static u32 xfer_share_next = 1;

int xfer_share_create(struct xfer_region *r, u32 rule, u32 id, u32 *share_id)
{
	struct user_namespace *ns = current_user_ns();
	struct xfer_share_entry *s;
	int ret;

	s = kzalloc(sizeof(*s), GFP_KERNEL_ACCOUNT);
	if (!s)
		return -ENOMEM;
	s->rule = rule;
	s->owner_pid = task_tgid_vnr(current);
	atomic_set(&s->opens, 0);

	switch (rule) {
	case XFER_SHARE_OWNER:
		if (id) {
			ret = -EINVAL;
			goto err_free;
		}
		s->uid = current_euid();
		break;
	case XFER_SHARE_UID:
		s->uid = make_kuid(ns, id);
		if (!uid_valid(s->uid)) {
			ret = -EINVAL;
			goto err_free;
		}
		break;
	case XFER_SHARE_GROUP:
		s->gid = make_kgid(ns, id);
		if (!gid_valid(s->gid)) {
			ret = -EINVAL;
			goto err_free;
		}
		break;
	default:
		ret = -EINVAL;
		goto err_free;
	}

	mutex_lock(&xfer_lock);
	/* Cyclic: the id of a share that ended never opens a newer one. */
	ret = xa_alloc_cyclic(&xfer_shares, &s->id, s, XA_LIMIT(1, INT_MAX),
			      &xfer_share_next, GFP_KERNEL);
	if (ret < 0)
		goto err_unlock;
	/* The share holds a region reference until it is removed. */
	xfer_region_get(r);
	s->region = r;
	atomic_inc(&r->nr_shares);
	atomic_inc(&xfer_counters.shares);
	*share_id = s->id;
	mutex_unlock(&xfer_lock);
	return 0;

err_unlock:
	mutex_unlock(&xfer_lock);
err_free:
	kfree(s);
	return ret;
}

static bool xfer_share_allowed(const struct xfer_share_entry *s)
{
	switch (s->rule) {
	case XFER_SHARE_OWNER:
	case XFER_SHARE_UID:
		return uid_eq(current_euid(), s->uid);
	case XFER_SHARE_GROUP:
		return in_egroup_p(s->gid);
	}
	return false;
}

/* Returns the shared region with a reference for the caller. */
struct xfer_region *xfer_share_open(u32 share_id)
{
	struct xfer_region *r;
	struct xfer_share_entry *s;

	mutex_lock(&xfer_lock);
	s = xa_load(&xfer_shares, share_id);
	if (!s) {
		r = ERR_PTR(-ENOENT);
	} else if (!xfer_share_allowed(s)) {
		r = ERR_PTR(-EACCES);
	} else if (READ_ONCE(s->region->invalid)) {
		r = ERR_PTR(-ENODEV);
	} else {
		r = s->region;
		xfer_region_get(r);
		atomic_inc(&s->opens);
	}
	mutex_unlock(&xfer_lock);
	return r;
}

/* The owner dropped @r: its shares can no longer be opened. */
void xfer_share_remove_region(struct xfer_region *r)
{
	struct xfer_share_entry *s;
	unsigned long idx;

	lockdep_assert_held(&xfer_lock);

	r->owner_gone = true;
	xa_for_each(&xfer_shares, idx, s) {
		if (s->region != r)
			continue;
		xa_erase(&xfer_shares, idx);
		atomic_dec(&r->nr_shares);
		atomic_dec(&xfer_counters.shares);
		/* The caller still holds its own reference: never the last. */
		refcount_dec(&r->ref.refcount);
		kfree(s);
	}
}

/* Undo xfer_share_create() when its id could not reach the caller. */
void xfer_share_destroy(u32 share_id)
{
	struct xfer_share_entry *s;

	mutex_lock(&xfer_lock);
	s = xa_erase(&xfer_shares, share_id);
	if (s) {
		atomic_dec(&s->region->nr_shares);
		atomic_dec(&xfer_counters.shares);
		refcount_dec(&s->region->ref.refcount);
		kfree(s);
	}
	mutex_unlock(&xfer_lock);
}
