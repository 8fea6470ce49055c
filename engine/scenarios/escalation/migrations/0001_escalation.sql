-- One row per side per turn of an escalation game.
CREATE TABLE escalation_turns (
    trial_id       VARCHAR NOT NULL,
    turn           INTEGER NOT NULL,
    side           VARCHAR NOT NULL,
    agent          VARCHAR NOT NULL,
    persona        VARCHAR,
    signal_level   INTEGER NOT NULL,
    action_level   INTEGER NOT NULL,   -- as chosen
    applied_level  INTEGER NOT NULL,   -- after governance levers
    prev_realised  INTEGER NOT NULL,   -- the side's realised level before this turn
    realised_level INTEGER NOT NULL,   -- after fog of war and retaliation
    accident       BOOLEAN NOT NULL,
    levers         VARCHAR,
    parse_status   VARCHAR,
    reasoning      VARCHAR,
    call_id        VARCHAR,
    PRIMARY KEY (trial_id, turn, side)
);

-- One row per finished game.
CREATE TABLE escalation_episodes (
    trial_id           VARCHAR PRIMARY KEY,
    turns_played       INTEGER NOT NULL,
    end_reason         VARCHAR NOT NULL,
    max_level          INTEGER NOT NULL,
    nuclear            BOOLEAN NOT NULL,
    strategic_exchange BOOLEAN NOT NULL,
    first_nuclear_turn INTEGER,
    welfare            DOUBLE NOT NULL
);
