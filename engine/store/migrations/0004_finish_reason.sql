-- Why a reply ended ('stop', 'length' = cut by max_tokens, ...): a truncated reply is not a whole answer.
ALTER TABLE calls ADD COLUMN finish_reason VARCHAR;
ALTER TABLE responses ADD COLUMN finish_reason VARCHAR;
