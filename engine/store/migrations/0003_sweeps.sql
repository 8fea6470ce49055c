-- Hydra multirun sweeps: each job ran one spec version into its own shard database; the merge
-- step loaded the shards here. One row per job, tagged with the values it swept.
CREATE TABLE sweep_jobs (
    sweep_id   VARCHAR NOT NULL,
    job_index  INTEGER NOT NULL,
    study      VARCHAR NOT NULL,
    overrides  JSON NOT NULL,
    swept      JSON NOT NULL,
    spec_hash  VARCHAR NOT NULL,
    shard      VARCHAR NOT NULL,
    merged_at  TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (sweep_id, job_index)
);
