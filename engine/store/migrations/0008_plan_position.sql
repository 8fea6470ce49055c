-- Each planned trial's place in the design's order (cells as the design lists them: models, then
-- conditions, then controls; then items; then seeds). Reports, exports and the transcript browser
-- order by it: the storage order of rows (rowid) is not the plan's, since inserts run in parallel.
-- Rows planned before this column are given theirs by the next run of their spec.
ALTER TABLE plan ADD COLUMN position INTEGER;
