-- One row per trace: a behaviour under an attack, sent to a model; judges grade these.
CREATE TABLE jailbreak_responses (
    trial_id      VARCHAR PRIMARY KEY,
    model_key     VARCHAR NOT NULL,
    attack        VARCHAR NOT NULL,
    prompt_id     VARCHAR NOT NULL,
    category      VARCHAR NOT NULL,
    source        VARCHAR,
    benign        BOOLEAN NOT NULL,
    sample        INTEGER NOT NULL,
    behaviour     VARCHAR NOT NULL,  -- the request as the corpus words it (what judges are shown)
    prompt        VARCHAR NOT NULL,  -- what the model saw: the attack template around the request
    response_text VARCHAR NOT NULL,
    call_id       VARCHAR NOT NULL
);

-- Analysis-only studies: per-trace verdicts imported from a file, per spec version.
CREATE TABLE jailbreak_imported_traces (
    spec_hash       VARCHAR NOT NULL,
    row_number      INTEGER NOT NULL,
    model           VARCHAR NOT NULL,
    provider        VARCHAR NOT NULL,
    family          VARCHAR,
    params_total_b  DOUBLE NOT NULL,
    params_active_b DOUBLE,
    attack          VARCHAR NOT NULL,
    prompt_id       VARCHAR NOT NULL,
    category        VARCHAR NOT NULL,
    benign          BOOLEAN NOT NULL,
    label           VARCHAR NOT NULL,
    source_file     VARCHAR NOT NULL,
    source_sha256   VARCHAR NOT NULL,
    PRIMARY KEY (spec_hash, row_number)
);
