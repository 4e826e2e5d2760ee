# The tools' launcher mode (tools/common/launch.c): ranks started as
# torchrun, srun and mpirun start them, through the file store and etcd.
TEST_SUITES += tests/tools/launch.sh
