// SPDX-License-Identifier: GPL-2.0
/*
 * State for operators: sysfs (/sys/class/misc/xfer/) holds the stable
 * totals and limits; debugfs (xfer/) lists regions, shares, contexts and
 * each context's live transfer counters from its stats page.
 */
#include <linux/debugfs.h>
#include <linux/device.h>
#include <linux/mm.h>
#include <linux/seq_file.h>
#include <linux/sysfs.h>

#include "xfer_priv.h"

#define XFER_ATTR_U64(_name, _expr)					\
static ssize_t _name##_show(struct device *dev,				\
			    struct device_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, "%llu\n", (unsigned long long)(_expr));	\
}									\
static DEVICE_ATTR_RO(_name)

XFER_ATTR_U64(abi_version, XFER_ABI_VERSION);
XFER_ATTR_U64(pinned_bytes,
	      (u64)atomic64_read(&xfer_counters.pinned_pages) << PAGE_SHIFT);
XFER_ATTR_U64(max_pinned_bytes, xfer_max_pinned_bytes());
XFER_ATTR_U64(imported_bytes, atomic64_read(&xfer_counters.imported_bytes));
XFER_ATTR_U64(regions, atomic_read(&xfer_counters.regions));
XFER_ATTR_U64(contexts, atomic_read(&xfer_counters.contexts));
XFER_ATTR_U64(shares, atomic_read(&xfer_counters.shares));
XFER_ATTR_U64(exports, atomic_read(&xfer_counters.exports));
XFER_ATTR_U64(pins_total, atomic64_read(&xfer_counters.pins_total));
XFER_ATTR_U64(pins_failed, atomic64_read(&xfer_counters.pins_failed));

static struct attribute *xfer_sysfs_attrs[] = {
	&dev_attr_abi_version.attr,
	&dev_attr_pinned_bytes.attr,
	&dev_attr_max_pinned_bytes.attr,
	&dev_attr_imported_bytes.attr,
	&dev_attr_regions.attr,
	&dev_attr_contexts.attr,
	&dev_attr_shares.attr,
	&dev_attr_exports.attr,
	&dev_attr_pins_total.attr,
	&dev_attr_pins_failed.attr,
	NULL,
};

static const struct attribute_group xfer_sysfs_group = {
	.attrs = xfer_sysfs_attrs,
};

const struct attribute_group *xfer_sysfs_groups[] = {
	&xfer_sysfs_group,
	NULL,
};

static struct dentry *xfer_debugfs_root;

static const char *xfer_region_state(const struct xfer_region *r)
{
	if (READ_ONCE(r->invalid))
		return "invalid";
	if (READ_ONCE(r->owner_gone))
		return "orphaned";
	return "active";
}

static int xfer_regions_show(struct seq_file *m, void *unused)
{
	struct xfer_region *r;

	seq_puts(m, "id\towner_pid\towner\tkind\tbytes\trefs\tholders\tshares\texports\tmaps\tstate\n");
	spin_lock(&xfer_regions_lock);
	list_for_each_entry(r, &xfer_regions, node)
		seq_printf(m, "%u\t%d\t%s\t%s\t%llu\t%u\t%d\t%d\t%d\t%d\t%s\n",
			   r->id, r->owner_pid, r->owner_comm,
			   xfer_region_kind_name(r), r->length,
			   kref_read(&r->ref), atomic_read(&r->nr_holders),
			   atomic_read(&r->nr_shares),
			   atomic_read(&r->nr_exports),
			   atomic_read(&r->nr_maps), xfer_region_state(r));
	spin_unlock(&xfer_regions_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(xfer_regions);

static const char *const xfer_rule_names[] = {
	[XFER_SHARE_OWNER] = "owner",
	[XFER_SHARE_GROUP] = "group",
	[XFER_SHARE_UID] = "uid",
};

static int xfer_shares_show(struct seq_file *m, void *unused)
{
	struct user_namespace *ns = seq_user_ns(m);
	struct xfer_share_entry *s;
	unsigned long idx;

	seq_puts(m, "share_id\tregion\towner_pid\trule\tid\topens\n");
	mutex_lock(&xfer_lock);
	xa_for_each(&xfer_shares, idx, s)
		seq_printf(m, "%u\t%u\t%d\t%s\t%u\t%d\n", s->id, s->region->id,
			   s->owner_pid, xfer_rule_names[s->rule],
			   s->rule == XFER_SHARE_GROUP ?
			   from_kgid_munged(ns, s->gid) :
			   from_kuid_munged(ns, s->uid),
			   atomic_read(&s->opens));
	mutex_unlock(&xfer_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(xfer_shares);

static int xfer_contexts_show(struct seq_file *m, void *unused)
{
	struct xfer_ctx *ctx;

	seq_puts(m, "ctx\tpid\tcomm\tregions\tpinned_bytes\n");
	mutex_lock(&xfer_lock);
	list_for_each_entry(ctx, &xfer_contexts, node)
		seq_printf(m, "%u\t%d\t%s\t%u\t%llu\n", ctx->id, ctx->pid,
			   ctx->comm, READ_ONCE(ctx->nr_regions),
			   READ_ONCE(ctx->pinned_bytes));
	mutex_unlock(&xfer_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(xfer_contexts);

/*
 * A name from the page (written by userspace) as one printable word: at
 * most XFER_CTX_STATS_NAME_LEN - 1 bytes up to the first NUL, a space or
 * anything but printable ASCII shown as '?', "-" when empty, so that a
 * line of the table stays one line of tab-separated fields.
 */
static void xfer_stats_name(char *out, const char *in)
{
	int i;

	for (i = 0; i < XFER_CTX_STATS_NAME_LEN - 1; i++) {
		char ch = READ_ONCE(in[i]);

		if (!ch)
			break;
		out[i] = ch > ' ' && ch <= '~' ? ch : '?';
	}
	if (!i)
		out[i++] = '-';
	out[i] = 0;
}

/*
 * The library writes the page concurrently: read each word once. Every
 * field is untrusted: num_rails is clamped, names are sanitised, and the
 * version-2 tail is shown only when the page says version >= 2 and a size
 * that covers it.
 */
static int xfer_stats_show(struct seq_file *m, void *unused)
{
	struct xfer_ctx *ctx = m->private;
	struct xfer_ctx_stats *st = page_address(ctx->stats);
	u32 ver = READ_ONCE(st->version);
	u32 n = min_t(u32, READ_ONCE(st->num_rails),
		      XFER_CTX_STATS_MAX_RAILS);
	bool v2 = ver >= 2 && READ_ONCE(st->size) >= XFER_CTX_STATS_SIZE_V2;
	char name[XFER_CTX_STATS_NAME_LEN];
	u32 i;

	BUILD_BUG_ON(sizeof(*st) != XFER_CTX_STATS_SIZE_V2 ||
		     offsetof(struct xfer_ctx_stats, size) != XFER_CTX_STATS_SIZE_V1 ||
		     sizeof(*st) > PAGE_SIZE);
	seq_printf(m, "version %u\nnum_rails %u\nops_inflight %llu\nlast_error %lld\n",
		   ver, READ_ONCE(st->num_rails),
		   READ_ONCE(st->ops_inflight), READ_ONCE(st->last_error));
	if (v2) {
		xfer_stats_name(name, st->provider);
		seq_printf(m, "peers_up %u\npeers_down %u\nengine_id %llu\nprovider %s\n",
			   READ_ONCE(st->peers_up), READ_ONCE(st->peers_down),
			   READ_ONCE(st->engine_id), name);
	}
	seq_printf(m, "rail\tbytes_posted\tbytes_completed\tops_posted\tops_completed\tops_failed\timm_received%s\n",
		   v2 ? "\tops_inflight\tname" : "");
	for (i = 0; i < n; i++) {
		struct xfer_ctx_stats_rail *d = &st->rail[i];

		seq_printf(m, "%u\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu", i,
			   READ_ONCE(d->bytes_posted),
			   READ_ONCE(d->bytes_completed),
			   READ_ONCE(d->ops_posted),
			   READ_ONCE(d->ops_completed),
			   READ_ONCE(d->ops_failed),
			   READ_ONCE(d->imm_received));
		if (v2) {
			xfer_stats_name(name, st->rail_name[i]);
			seq_printf(m, "\t%llu\t%s",
				   READ_ONCE(st->rail_ops_inflight[i]), name);
		}
		seq_putc(m, '\n');
	}
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(xfer_stats);

void xfer_debugfs_ctx_add(struct xfer_ctx *ctx)
{
	char name[24];

	snprintf(name, sizeof(name), "ctx-%u", ctx->id);
	ctx->dir = debugfs_create_dir(name, xfer_debugfs_root);
	debugfs_create_file("stats", 0400, ctx->dir, ctx, &xfer_stats_fops);
}

void xfer_debugfs_ctx_remove(struct xfer_ctx *ctx)
{
	debugfs_remove(ctx->dir);
}

void xfer_debugfs_init(void)
{
	xfer_debugfs_root = debugfs_create_dir("xfer", NULL);
	debugfs_create_file("regions", 0400, xfer_debugfs_root, NULL,
			    &xfer_regions_fops);
	debugfs_create_file("shares", 0400, xfer_debugfs_root, NULL,
			    &xfer_shares_fops);
	debugfs_create_file("contexts", 0400, xfer_debugfs_root, NULL,
			    &xfer_contexts_fops);
}

void xfer_debugfs_exit(void)
{
	debugfs_remove(xfer_debugfs_root);
}
