-- Health-gated rollouts (otter-core health): connects counted per device (a boot loop shows as
-- churn), counters from devices' health reports, each wave's bake and its judgement, and the
-- campaign a rollback was made for.
ALTER TABLE devices ADD COLUMN connects BIGINT NOT NULL DEFAULT 0;

-- Cumulative counters from a device's health reports (`crashes`, `reboots`, …).
CREATE TABLE device_counters (
    product_id  TEXT NOT NULL,
    device_name TEXT NOT NULL,
    name        TEXT NOT NULL,
    total       BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (product_id, device_name, name),
    FOREIGN KEY (product_id, device_name) REFERENCES devices(product_id, name)
);

-- One bake per campaign and wave: started (planner clock) with the counts it is measured
-- from, then judged once (verdict and the evaluation's figures, JSON).
CREATE TABLE campaign_bakes (
    campaign_id BIGINT NOT NULL REFERENCES campaigns(id),
    wave        BIGINT NOT NULL,
    started_at  BIGINT NOT NULL,
    baseline    TEXT NOT NULL,
    judged_at   BIGINT,
    verdict     TEXT,
    evaluation  TEXT,
    -- the operator resumed after an unhealthy or inconclusive verdict
    accepted    BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (campaign_id, wave)
);

ALTER TABLE campaigns ADD COLUMN rollback_of BIGINT;
