-- Several instances on one database (version 2): each phone's Devices link is held by one
-- instance at a time. A lease names its owner, lasts until `expires_at` (the database's clock,
-- so instances' clocks need not agree) and carries a fencing token, new on every change of
-- owner: a phone's record is written only by the owner holding the current token.
-- No foreign key to phones: a new phone's lease is taken before its record is written.
CREATE SEQUENCE lease_tokens;
CREATE TABLE leases (
    mac        bytea PRIMARY KEY CHECK (octet_length(mac) = 6),
    owner      text NOT NULL,
    token      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX leases_owner ON leases (owner);
