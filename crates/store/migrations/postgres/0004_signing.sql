-- Signed firmware (docs/signing.md): the public signing keys of each product and the signature
-- of each firmware image. Private keys are never stored here.

-- A product's ed25519 public keys. The first key is registered by an administrator; every
-- later one must be announced by a key already registered: `signed_by` names that key and
-- `announcement` is its signature over the announcement text (docs/protocol-extensions.md).
CREATE TABLE product_keys (
    product_id    TEXT COLLATE "C" NOT NULL REFERENCES products(id),
    key_id        TEXT COLLATE "C" NOT NULL,
    -- standard base64 of the 32-byte public key
    public_key    TEXT NOT NULL,
    signed_by     TEXT,
    announcement  TEXT,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (product_id, key_id)
);

-- The current signature of a firmware image (replaced when it is re-signed, e.g. to extend
-- its expiry or allow a downgrade). Kept beside `firmware` so unsigned images have no row.
CREATE TABLE firmware_signatures (
    firmware_id   BIGINT PRIMARY KEY REFERENCES firmware(id),
    key_id        TEXT COLLATE "C" NOT NULL,
    -- standard base64 of the 64-byte signature
    sig           TEXT NOT NULL,
    issued        BIGINT NOT NULL,
    expires       BIGINT NOT NULL,
    downgrade     BOOLEAN NOT NULL DEFAULT FALSE,
    signed_at     BIGINT NOT NULL
);
