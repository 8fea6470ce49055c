-- Core tables shared by every scenario. One row per spec version, trial, model call.
CREATE TABLE studies (
    spec_hash        VARCHAR PRIMARY KEY,
    name             VARCHAR NOT NULL,
    title            VARCHAR,
    spec             JSON NOT NULL,
    overrides        JSON,
    command          VARCHAR,
    engine_version   VARCHAR,
    package_versions JSON,
    git_sha          VARCHAR,
    created_at       TIMESTAMP DEFAULT current_timestamp
);

-- Which trials make up a spec version: analysis joins through here.
CREATE TABLE plan (
    spec_hash VARCHAR NOT NULL,
    trial_id  VARCHAR NOT NULL,
    cell_id   VARCHAR NOT NULL,
    cell      JSON NOT NULL,
    seed      INTEGER NOT NULL,
    PRIMARY KEY (spec_hash, trial_id)
);

CREATE TABLE trials (
    trial_id    VARCHAR PRIMARY KEY,
    scenario    VARCHAR NOT NULL,
    cell_id     VARCHAR NOT NULL,
    cell        JSON NOT NULL,
    seed        INTEGER NOT NULL,
    inputs      JSON NOT NULL,
    status      VARCHAR NOT NULL CHECK (status IN ('done', 'error')),
    error_kind  VARCHAR,
    error       VARCHAR,
    attempt     INTEGER NOT NULL,
    started_at  TIMESTAMP,
    finished_at TIMESTAMP,
    duration_s  DOUBLE
);

-- Every model call, cached or live, successful or not.
CREATE TABLE calls (
    call_id           VARCHAR PRIMARY KEY,
    trial_id          VARCHAR NOT NULL,
    trial_attempt     INTEGER NOT NULL,
    purpose           VARCHAR NOT NULL,
    model_key         VARCHAR NOT NULL,
    litellm_id        VARCHAR NOT NULL,
    request_hash      VARCHAR NOT NULL,
    messages          JSON NOT NULL,
    params            JSON NOT NULL,
    response_text     VARCHAR,
    raw_response      JSON,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    cost_usd          DOUBLE,
    latency_s         DOUBLE,
    cache_hit         BOOLEAN NOT NULL,
    parse_status      VARCHAR CHECK (parse_status IN ('ok', 'repaired', 'failed')),
    retries           INTEGER NOT NULL,
    status            VARCHAR NOT NULL CHECK (status IN ('ok', 'error')),
    error             VARCHAR,
    created_at        TIMESTAMP DEFAULT current_timestamp
);

-- Content-addressed response cache: key = hash(model, weights, parameters, messages, seed).
-- Written as soon as a live call returns, so a killed trial's finished calls are not repeated.
CREATE TABLE responses (
    request_hash      VARCHAR PRIMARY KEY,
    litellm_id        VARCHAR NOT NULL,
    response_text     VARCHAR NOT NULL,
    raw_response      JSON,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    cost_usd          DOUBLE,
    latency_s         DOUBLE,
    created_at        TIMESTAMP DEFAULT current_timestamp
);
