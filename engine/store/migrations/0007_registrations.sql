-- Pre-registration (engine/store/registration.py): per study, the hash of what its report tests (the
-- claims, the primary contrasts, the analysis settings: engine/report/preregistration.py) as it stood
-- before the study's first data, and each later change of it, recorded the first time a run, a
-- regrade or a report saw it. Times are UTC.
CREATE TABLE registrations (
    study          VARCHAR PRIMARY KEY,
    settings_hash  VARCHAR NOT NULL,
    settings       JSON NOT NULL,
    spec_hash      VARCHAR NOT NULL,    -- the spec version that registered them
    registered_at  TIMESTAMP NOT NULL,
    before_data    BOOLEAN NOT NULL,    -- false: the database held runs of the study before this row
    imported_at    TIMESTAMP            -- analysis-only studies: when the first import began
);

CREATE TABLE registration_amendments (
    study          VARCHAR NOT NULL,
    number         INTEGER NOT NULL,    -- 1, 2, ... in the order they were seen
    old_hash       VARCHAR NOT NULL,
    new_hash       VARCHAR NOT NULL,
    changes        JSON NOT NULL,       -- [{key, old, new}]: what changed, by key (old/new absent: added/removed)
    settings       JSON NOT NULL,       -- the settings as amended
    spec_hash      VARCHAR NOT NULL,
    seen_at        TIMESTAMP NOT NULL,
    command        VARCHAR NOT NULL,    -- the command that saw the change first: run, judge, report
    PRIMARY KEY (study, number)
);
