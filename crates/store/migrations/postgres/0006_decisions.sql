-- Decisions in one place: a product says how its versions are ordered (semver | numeric |
-- opaque; otter-core VersionScheme), and an upgrade says why Otter put it where it is
-- (otter-core Reason: skipped, failed, waiting), in its row and in its history.
ALTER TABLE products ADD COLUMN version_scheme TEXT NOT NULL DEFAULT 'semver';
ALTER TABLE upgrades ADD COLUMN reason TEXT;
ALTER TABLE upgrade_events ADD COLUMN reason TEXT;
