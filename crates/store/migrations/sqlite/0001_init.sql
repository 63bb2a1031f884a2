-- Otter's schema. Times are Unix milliseconds. Names are validated by otter-core before they get here.
CREATE TABLE products (
    id          TEXT PRIMARY KEY,
    dialect     TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE devices (
    product_id  TEXT NOT NULL REFERENCES products(id),
    name        TEXT NOT NULL,
    secret      TEXT NOT NULL,
    online      BOOLEAN NOT NULL DEFAULT FALSE,
    last_seen   BIGINT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (product_id, name)
);

-- The running version of each module of each device, as last reported.
CREATE TABLE device_versions (
    product_id  TEXT NOT NULL,
    device_name TEXT NOT NULL,
    module      TEXT NOT NULL,
    version     TEXT NOT NULL,
    reported_at BIGINT NOT NULL,
    PRIMARY KEY (product_id, device_name, module),
    FOREIGN KEY (product_id, device_name) REFERENCES devices(product_id, name)
);

CREATE TABLE firmware (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id  TEXT NOT NULL REFERENCES products(id),
    module      TEXT NOT NULL,
    version     TEXT NOT NULL,
    size        BIGINT NOT NULL,
    md5         TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (product_id, module, version)
);

CREATE TABLE campaigns (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id  TEXT NOT NULL REFERENCES products(id),
    firmware_id BIGINT NOT NULL REFERENCES firmware(id),
    created_at  BIGINT NOT NULL
);

-- One device in one campaign: the state machine of otter-core, persisted.
CREATE TABLE upgrades (
    campaign_id BIGINT NOT NULL REFERENCES campaigns(id),
    product_id  TEXT NOT NULL,
    device_name TEXT NOT NULL,
    module      TEXT NOT NULL,
    target      TEXT NOT NULL,
    state       TEXT NOT NULL,
    percent     INTEGER,
    result_code INTEGER,
    result_msg  TEXT,
    pushes      INTEGER NOT NULL DEFAULT 0,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, product_id, device_name),
    FOREIGN KEY (product_id, device_name) REFERENCES devices(product_id, name)
);

-- A device is in at most one live upgrade per module.
CREATE UNIQUE INDEX upgrades_one_live_per_module ON upgrades (product_id, device_name, module)
    WHERE state IN ('pending', 'pushed', 'downloading', 'burning');
CREATE INDEX upgrades_by_device ON upgrades (product_id, device_name, updated_at);
