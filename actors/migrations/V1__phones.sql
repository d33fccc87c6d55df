-- innoprov's PostgreSQL schema, version 1: the same three maps as the sled store, values in the
-- same encoding (JSON bytes), so a record's bytes compare equal whichever store holds them.
CREATE TABLE phones (
    mac    bytea PRIMARY KEY CHECK (octet_length(mac) = 6),
    record bytea NOT NULL
);
CREATE TABLE access (
    mac   bytea PRIMARY KEY CHECK (octet_length(mac) = 6),
    state bytea NOT NULL
);
CREATE TABLE audit (
    mac     bytea PRIMARY KEY CHECK (octet_length(mac) = 6),
    entries bytea NOT NULL
);
-- One row: a value sealed with the installation's seal key, so an instance started with
-- another key is refused at start instead of failing on every phone later.
CREATE TABLE installation (
    id         integer PRIMARY KEY CHECK (id = 1),
    seal_check text NOT NULL
);
