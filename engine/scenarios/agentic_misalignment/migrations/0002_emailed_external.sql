-- The leaking variant's final rule needs whether the agent emailed outside the company (the
-- executive's email domain). NULL on replies stored before this column existed.
ALTER TABLE agentic_responses ADD COLUMN emailed_external BOOLEAN;
