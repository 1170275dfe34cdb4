-- The audit log (DESIGN §10): each org's levels, and each org's events as
-- one hash chain. audit_heads holds each org's chain head (last seq and
-- hash); appends run in write transactions, which SQLite serialises.
-- meta is the event's metadata as the edge wrote it: the bytes the chain
-- hashes. The chain covers meta and the digests, not content, so content
-- can be removed (shred, retention) without breaking it.

-- +goose Up
CREATE TABLE audit_settings (
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    key_id     TEXT    NOT NULL, -- '' for the org's own level
    level      TEXT    NOT NULL CHECK (level IN ('none', 'hash', 'full')),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, key_id)
);

CREATE TABLE audit_heads (
    org_id TEXT    NOT NULL PRIMARY KEY REFERENCES orgs (id),
    seq    INTEGER NOT NULL CHECK (seq >= 0),
    hash   BLOB    NOT NULL CHECK (length(hash) = 32)
);

CREATE TABLE audit_events (
    org_id          TEXT    NOT NULL REFERENCES orgs (id),
    seq             INTEGER NOT NULL CHECK (seq > 0),
    id              TEXT    NOT NULL UNIQUE CHECK (id <> ''),
    at              INTEGER NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('admin', 'request')),
    meta            BLOB    NOT NULL,
    request_digest  BLOB,
    response_digest BLOB,
    -- Sealed by the org's data key (purpose audit, record key id) at level
    -- full; NULL otherwise and once removed.
    content         BLOB,
    content_removed TEXT    NOT NULL DEFAULT '' CHECK (content_removed IN ('', 'retention', 'shred')),
    prev_hash       BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash            BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (org_id, seq)
);
CREATE INDEX audit_events_org_time ON audit_events (org_id, at);

-- +goose Down
DROP TABLE audit_events;
DROP TABLE audit_heads;
DROP TABLE audit_settings;
