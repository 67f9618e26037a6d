#!/usr/bin/env bash
# The batch figures of docs/performance.md: every transport, prefetch 64 and 1, one and two
# children, then steady mode. Prints one JSON line per run (rex asynctask-bench --json).
# Needs the local PostgreSQL, Redis and RabbitMQ of the CI machine; REX defaults to the
# release build.
set -u
R=${REX:-target/release/rex}
PG="postgresql://postgres@127.0.0.1:5432/test?schema=rex_bench"
RD="redis://127.0.0.1:6379/0?key_prefix=rex_bench"
AM="amqp://guest:guest@127.0.0.1:5672/%2f?prefix=rex_bench"
for rep in 1 2; do
  "$R" asynctask-bench --tasks 100000 --json
  "$R" asynctask-bench --tasks 100000 --prefetch 1 --json
  for t in "$PG" "$RD"; do
    "$R" asynctask-bench --transport="$t" --tasks 50000 --json
    "$R" asynctask-bench --transport="$t" --tasks 20000 --prefetch 1 --json
    "$R" asynctask-bench --transport="$t" --tasks 50000 --concurrency 2 --json
  done
  "$R" asynctask-bench --transport="$AM" --tasks 20000 --json
  "$R" asynctask-bench --transport="$AM" --tasks 20000 --prefetch 1 --json
done
for t in "" "--transport=$PG" "--transport=$RD" "--transport=$AM"; do
  "$R" asynctask-bench $t --mode steady --tasks 3000 --rate 500 --json
done
