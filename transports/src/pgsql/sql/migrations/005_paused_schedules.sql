CREATE TABLE {schema}.paused_schedules (
    id TEXT COLLATE "C" PRIMARY KEY
);
