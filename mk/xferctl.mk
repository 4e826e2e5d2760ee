# xferctl (tools/xferctl): the module's uapi header gives it the ABI version
# and the stats page layout the library was built with.
$(BUILD)/tools/xferctl/%.o: INC_tools += $(UAPI)
# Host cases (no module): grammar, refusals, module/health without the
# module, topo, and the debugfs/sysfs parsers on sample files.
TEST_SUITES += tests/tools/xferctl.sh
# A live engine without the module for the host cases (stat, monitor, prom).
tests: $(BUILD)/tests/tools/xferctl_engine
