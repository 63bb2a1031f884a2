-- Otter nodes sharing this database, for partitioning device messages among them (external
-- broker mode). A node is live while its heartbeat is recent. Times are Unix ms.
CREATE TABLE nodes (
    id       TEXT PRIMARY KEY,
    seen_at  BIGINT NOT NULL
);
