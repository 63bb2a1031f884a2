-- Operator actions (admin API and web console), for the console's audit log. Times are Unix ms.
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       BIGINT NOT NULL,
    -- who: the admin token's holder ("admin"); the console sign-in records its attempts too
    actor    TEXT NOT NULL,
    -- what, dotted: product.create, firmware.upload, campaign.cancel, console.sign_in ...
    action   TEXT NOT NULL,
    -- on what, for display: "campaign #7", "SIM-aliyun/dev1", "SIM-aliyun 1.1.0"
    subject  TEXT NOT NULL,
    -- the request's essentials as JSON
    detail   TEXT NOT NULL DEFAULT '{}'
);
