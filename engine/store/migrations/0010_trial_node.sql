-- The Ray node that played each trial (the executor: ray); null for trials played by the local
-- executor. Shows how a run spread over a cluster, and where a failing node's trials ran.
ALTER TABLE trials ADD COLUMN node_id VARCHAR;
