-- Timelines are written behind longer than profile state, with a watermark of
-- their own: a start rebuilds the positions after it from the events' key ids
-- alone. Until now the timeline was written with the profiles, up to upto_seq.
ALTER TABLE projection_state ADD COLUMN timeline_upto INTEGER NOT NULL DEFAULT 0;
UPDATE projection_state SET timeline_upto = upto_seq;
