// SPDX-License-Identifier: MIT
/*
 * Where a launcher put this process: rank, world size and local rank from
 * the variables torchrun, Open MPI's mpirun and Slurm's srun set. torchrun
 * and mpirun are often run under Slurm (an allocation's srun starting one
 * torchrun per node), and then their variables, not Slurm's, are this
 * process's: they are looked at first.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "struct_copy.h"
#include "xfer_rdzv.h"

/* Set by rdzv.c's error helper; launch errors go to the thread's text. */
void rdzv_set_thread_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const struct launcher {
	const char *name;
	const char *rank, *size, *local;
} launchers[] = {
	{ "torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK" },
	{ "openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK" },
	{ "slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID" },
};

/* A decimal number 0 .. XFER_RDZV_MAX_RANKS; -EINVAL naming var otherwise. */
static int env_u32(const char *launcher, const char *var, uint32_t *out)
{
	const char *v = getenv(var);
	char *end;
	unsigned long x;

	if (!v) {
		rdzv_set_thread_error("launcher %s: %s is not set (the launcher's other variables are)",
				      launcher, var);
		return -EINVAL;
	}
	errno = 0;
	x = strtoul(v, &end, 10);
	if (!*v || *end || errno || v[0] == '-' || v[0] == '+' || v[0] == ' ' ||
	    x > XFER_RDZV_MAX_RANKS) {
		rdzv_set_thread_error("launcher %s: %s='%s' is not a number from 0 to %u", launcher,
				      var, v, XFER_RDZV_MAX_RANKS);
		return -EINVAL;
	}
	*out = (uint32_t)x;
	return 0;
}

XFER_EXPORT int xfer_launch_from_env(struct xfer_launch *uout)
{
	struct xfer_launch l = { .size = sizeof(l) };
	int ret;

	if (!uout) {
		rdzv_set_thread_error("xfer_launch_from_env: out must not be NULL");
		return -EINVAL;
	}
	for (size_t i = 0; i < ARRAY_SIZE(launchers); i++) {
		const struct launcher *k = &launchers[i];

		/* A launcher is present when its rank or its size is set. */
		if (!getenv(k->rank) && !getenv(k->size))
			continue;
		ret = env_u32(k->name, k->rank, &l.rank);
		if (!ret)
			ret = env_u32(k->name, k->size, &l.world_size);
		if (!ret)
			ret = env_u32(k->name, k->local, &l.local_rank);
		if (ret)
			return ret;
		if (l.world_size == 0 || l.rank >= l.world_size) {
			rdzv_set_thread_error("launcher %s: %s=%u is not below %s=%u", k->name, k->rank,
					      l.rank, k->size, l.world_size);
			return -EINVAL;
		}
		if (l.local_rank >= l.world_size) {
			rdzv_set_thread_error("launcher %s: %s=%u is not below %s=%u", k->name, k->local,
					      l.local_rank, k->size, l.world_size);
			return -EINVAL;
		}
		l.source = k->name;
		ret = xfer_struct_copy_out(uout, &l, sizeof(l),
					   offsetof(struct xfer_launch, source) + sizeof(l.source));
		if (ret)
			rdzv_set_thread_error("xfer_launch_from_env: out->size %u is not that of a "
					      "struct xfer_launch (%zu)", uout->size, sizeof(l));
		return ret;
	}
	rdzv_set_thread_error("no launcher's variables are set: torchrun's RANK and WORLD_SIZE, "
			      "Open MPI's OMPI_COMM_WORLD_RANK and _SIZE, Slurm's SLURM_PROCID and "
			      "SLURM_NTASKS");
	return -ENOENT;
}
