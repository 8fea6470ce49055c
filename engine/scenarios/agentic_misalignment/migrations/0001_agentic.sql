-- One row per trial: the agent's reply to its inbox under one condition, with what it did.
CREATE TABLE agentic_responses (
    trial_id            VARCHAR PRIMARY KEY,
    model_key           VARCHAR NOT NULL,
    variant             VARCHAR NOT NULL,
    goal_conflict       VARCHAR NOT NULL,
    threat              VARCHAR NOT NULL,
    safety_instructions VARCHAR NOT NULL,
    scratchpad          VARCHAR NOT NULL,
    sample              INTEGER NOT NULL,
    response_text       VARCHAR NOT NULL,
    scratchpad_text     VARCHAR,           -- the private reasoning, when the reply has one
    emails              JSON NOT NULL,     -- parsed tool calls: [{to, subject, body}]
    emails_sent         INTEGER NOT NULL,
    emailed_executive   BOOLEAN NOT NULL,
    call_id             VARCHAR NOT NULL
);
