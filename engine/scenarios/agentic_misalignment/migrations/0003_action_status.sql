-- Whether the reply's action could be read: 'parsed' (every tool block well formed; no block is
-- "no email") or 'unparseable' (a block left open, cut off at the end, or without its required
-- fields), and whether the call stopped at max_tokens (calls.finish_reason = 'length'). Replies
-- stored before these columns existed get the defaults, 'parsed' and not truncated, which is how
-- they were counted then; calls.finish_reason (joined by call_id) still tells which were cut.
ALTER TABLE agentic_responses ADD COLUMN action_status VARCHAR DEFAULT 'parsed';
ALTER TABLE agentic_responses ADD COLUMN truncated BOOLEAN DEFAULT FALSE;
