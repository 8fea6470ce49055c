-- A sweep job's share of the study's budget: what remained of the cap when the sweep was launched,
-- divided among its jobs (each job runs into its own shard, blind to its siblings' spend).
CREATE TABLE budget_share (
    max_usd    DOUBLE,
    max_tokens BIGINT,
    sweep_id   VARCHAR,
    jobs       INTEGER,
    created_at TIMESTAMP DEFAULT current_timestamp
);
