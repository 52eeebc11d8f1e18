# The core under load: bench_core plays the aggregators of a running 3-node keyless-core cluster
# on loopback (one top-level root per aggregator per second-round); run_core_bench.sh starts the
# cluster (dev PKI, temp dir, fsync on), reads the nodes' /metrics and CPU times around each
# rate, and stops everything. Included from bench/CMakeLists.txt; not a ctest test.
add_executable(bench_core ${CMAKE_CURRENT_LIST_DIR}/bench_core.c)
target_link_libraries(bench_core PRIVATE kl_aggr_load)
