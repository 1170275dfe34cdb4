-- +goose Up
-- Memories (DESIGN §10): named text blocks of an org (key_id '') or of one
-- of its keys, injected into requests as the provider's system
-- instruction. One row per memory holds its latest version; the text is
-- sealed by the org's data key (purpose memory) and NULL once removed, the
-- version kept so that the next set follows on and name@version always
-- names one text. bytes and tokens (an estimate) are metadata.
CREATE TABLE memories (
    org_id     TEXT    NOT NULL REFERENCES orgs (id),
    key_id     TEXT    NOT NULL,
    name       TEXT    NOT NULL CHECK (name <> ''),
    version    INTEGER NOT NULL CHECK (version > 0),
    sealed     BLOB,
    bytes      INTEGER NOT NULL CHECK (bytes >= 0),
    tokens     INTEGER NOT NULL CHECK (tokens >= 0),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, key_id, name)
);

-- The estimated tokens of the memories injected into a request (its
-- memory_id lists them as name@version,...); 0 when none was.
ALTER TABLE requests ADD COLUMN memory_tokens_estimate INTEGER NOT NULL DEFAULT 0;

-- A set or removed memory is a change other instances follow. SQLite
-- cannot alter a CHECK constraint, so the feed is copied into a new table;
-- its AUTOINCREMENT counter is carried over, so that no seq is ever
-- reused (a poller that saw seq n must never miss a later change).
CREATE TABLE changes_new (
    seq    INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    org_id TEXT    NOT NULL,
    kind   TEXT    NOT NULL CHECK (kind IN ('key', 'provider', 'org', 'dek', 'memory')),
    ref    TEXT    NOT NULL,
    at     INTEGER NOT NULL
);
INSERT INTO changes_new (seq, org_id, kind, ref, at) SELECT seq, org_id, kind, ref, at FROM changes;
UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'changes')
    WHERE name = 'changes_new' AND seq < (SELECT seq FROM sqlite_sequence WHERE name = 'changes');
INSERT INTO sqlite_sequence (name, seq) SELECT 'changes_new', seq FROM sqlite_sequence WHERE name = 'changes'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'changes_new');
DROP TABLE changes;
ALTER TABLE changes_new RENAME TO changes;

-- +goose Down
DELETE FROM changes WHERE kind = 'memory';
ALTER TABLE requests DROP COLUMN memory_tokens_estimate;
DROP TABLE memories;
