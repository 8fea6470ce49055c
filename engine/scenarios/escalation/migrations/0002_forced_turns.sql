-- Turns whose moves the rules set (a forced cooperation window): no agent chose them.
ALTER TABLE escalation_turns ADD COLUMN forced BOOLEAN NOT NULL DEFAULT FALSE;
