-- Sealed payloads move out of the database into append-only segment files (see
-- segment.go for why). A row written from now on has an empty payload and says
-- where its payload is; rows written before keep theirs inline (seg IS NULL).
ALTER TABLE events ADD COLUMN seg INTEGER;
ALTER TABLE events ADD COLUMN off INTEGER;
ALTER TABLE events ADD COLUMN len INTEGER;
