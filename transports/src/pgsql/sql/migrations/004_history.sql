-- Throughput history: per-minute counters of each queue, added to by every master (the
-- histograms' buckets as arrays, added element by element). By minute first, so that
-- pruning what is older than a day is a range of the key.
CREATE TABLE {schema}.history (
    minute BIGINT NOT NULL,
    queue TEXT COLLATE "C" NOT NULL,
    succeeded BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    retried BIGINT NOT NULL,
    crashed BIGINT NOT NULL,
    run_buckets BIGINT[] NOT NULL,
    run_sum_ms BIGINT NOT NULL,
    wait_buckets BIGINT[] NOT NULL,
    wait_sum_ms BIGINT NOT NULL,
    PRIMARY KEY (minute, queue)
);
