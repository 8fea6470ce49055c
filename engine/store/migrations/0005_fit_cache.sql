-- Results of expensive analyses (e.g. the trace-level mixed-effects fit), stored so that a report
-- reads them instead of refitting on every render. `key` is a content hash of everything the result
-- depends on: the exact input data the fit sees, its settings and the code's version (see
-- engine/store/fit_cache.py). Content-addressed: a row is never updated, only added.
CREATE TABLE fit_cache (
    key        VARCHAR PRIMARY KEY,
    kind       VARCHAR NOT NULL,
    result     JSON NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);
