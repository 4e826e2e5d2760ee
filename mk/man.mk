# Man pages (man/): installed by `make install` under share/man/man{1,3,7,8};
# tests/man.sh checks they render cleanly and name every public function
# and every tool option.
TEST_SUITES += tests/man.sh
