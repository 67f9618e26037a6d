-- Per-minute counters of each queue (`Counters` as JSON), added to by every master; by
-- minute first, so that pruning what is older than a day is a range of the key.
CREATE TABLE history (
    minute INTEGER NOT NULL,
    queue TEXT NOT NULL,
    counters TEXT NOT NULL,
    PRIMARY KEY (minute, queue)
) WITHOUT ROWID;
