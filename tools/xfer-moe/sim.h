/* SPDX-License-Identifier: MIT */
/* `xfer-moe sim`: the cluster simulator (lib/moe/sim.c) beside the
 * published figures. argv[0] is the command word ("sim"); the options
 * follow, -j/--json/--pretty among them wherever they were given. Prints
 * its own output (text or JSON) and returns the exit status. */
#ifndef XFER_MOE_TOOL_SIM_H
#define XFER_MOE_TOOL_SIM_H

int moe_cmd_sim(int argc, char **argv);

#endif
