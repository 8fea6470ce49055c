-- Judges' verdicts on stored responses, many judges side by side. A verdict belongs to a subject
-- (a trial's response, or a gold-set item 'gold/<rubric>/<id>'), a judge id from the spec, the
-- rubric version and the judge's fingerprint (model, settings, rubric text): changing any of them
-- grades again instead of reusing old verdicts. label 'ERROR' = the judge failed; never a rubric label.
CREATE TABLE verdicts (
    subject_id        VARCHAR NOT NULL,
    judge_id          VARCHAR NOT NULL,
    rubric_version    VARCHAR NOT NULL,
    judge_fingerprint VARCHAR NOT NULL,
    judge_kind        VARCHAR NOT NULL,
    label             VARCHAR NOT NULL,
    score             DOUBLE,
    rationale         VARCHAR,
    status            VARCHAR NOT NULL CHECK (status IN ('ok', 'error')),
    error             VARCHAR,
    call_id           VARCHAR,
    attempt           INTEGER NOT NULL,
    created_at        TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (subject_id, judge_id, rubric_version, judge_fingerprint)
);
