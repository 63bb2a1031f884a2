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
    -- uploaded → verifying → verified | rejected (verification on test devices)
    state       TEXT NOT NULL DEFAULT 'uploaded',
    created_at  BIGINT NOT NULL,
    UNIQUE (product_id, module, version)
);

-- Free-form device tags for targeting (`key=value` or plain words).
CREATE TABLE device_tags (
    product_id  TEXT NOT NULL,
    device_name TEXT NOT NULL,
    tag         TEXT NOT NULL,
    PRIMARY KEY (product_id, device_name, tag),
    FOREIGN KEY (product_id, device_name) REFERENCES devices(product_id, name)
);

CREATE TABLE campaigns (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id  TEXT NOT NULL REFERENCES products(id),
    firmware_id BIGINT NOT NULL REFERENCES firmware(id),
    -- rollout | verification
    kind        TEXT NOT NULL DEFAULT 'rollout',
    -- scheduled | running | paused | finished | canceled | aborted
    state       TEXT NOT NULL DEFAULT 'running',
    -- why it is paused, aborted or canceled
    reason      TEXT,
    -- push: offers are pushed; requested: only answered when a device asks
    mode        TEXT NOT NULL DEFAULT 'push',
    -- how devices were chosen (JSON, for display) and the strategy (JSON, otter-core Strategy)
    selection   TEXT NOT NULL DEFAULT '{}',
    strategy    TEXT NOT NULL DEFAULT '{}',
    allow_downgrade   BOOLEAN NOT NULL DEFAULT FALSE,
    skip_verification BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
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
    -- rollout order and wave, fixed at creation
    ordinal     INTEGER NOT NULL DEFAULT 0,
    wave        INTEGER NOT NULL DEFAULT 0,
    -- releases so far (1 + retries used) and when the last one happened (planner clock)
    attempts    INTEGER NOT NULL DEFAULT 0,
    released_at BIGINT,
    -- the device's version when it joined
    from_version TEXT,
    created_at  BIGINT NOT NULL DEFAULT 0,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, product_id, device_name),
    FOREIGN KEY (product_id, device_name) REFERENCES devices(product_id, name)
);

-- A device is in at most one live upgrade per module.
CREATE UNIQUE INDEX upgrades_one_live_per_module ON upgrades (product_id, device_name, module)
    WHERE state IN ('queued', 'pending', 'pushed', 'downloading', 'burning');
CREATE INDEX upgrades_by_device ON upgrades (product_id, device_name, updated_at);
CREATE INDEX upgrades_by_campaign ON upgrades (campaign_id, ordinal);

-- Every state change of every device upgrade: the device's history.
CREATE TABLE upgrade_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id BIGINT NOT NULL,
    product_id  TEXT NOT NULL,
    device_name TEXT NOT NULL,
    at          BIGINT NOT NULL,
    state       TEXT NOT NULL,
    percent     INTEGER,
    result_code INTEGER,
    result_msg  TEXT
);
CREATE INDEX upgrade_events_by_device ON upgrade_events (product_id, device_name, id);
