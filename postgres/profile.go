package postgres

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/trustloop/trustloop"
)

// writeProjection writes a group's profile-side changes in the commit's
// transaction: one array-bound statement per table, whatever the group size.
//
// Rows are sorted by key before they are written, so two nodes committing groups
// that touch the same profiles take their row locks in the same order and do not
// deadlock each other (a deadlock would still be retried, at the cost of a commit).
func writeProjection(ctx context.Context, tx pgx.Tx, c *trustloop.ProjectionChanges) error {
	written, err := writeProfiles(ctx, tx, c.Profiles, c.Behind)
	if err != nil {
		return err
	}
	members := c.Members
	if c.Behind && len(members) > 0 {
		// A flush's memberships go with its rows: where the guard kept a newer
		// row (written by a commit since), the commit's memberships stand too.
		members = make(map[int64][]int64, len(c.Members))
		for id, m := range c.Members {
			if written[id] {
				members[id] = m
			}
		}
	}
	if err := writeIdentities(ctx, tx, c.Identities); err != nil {
		return err
	}
	if err := writeMerges(ctx, tx, c.Merges); err != nil {
		return err
	}
	if err := writeTimeline(ctx, tx, c.Timeline); err != nil {
		return err
	}
	if err := writeMembers(ctx, tx, 0, members); err != nil {
		return err
	}
	if c.UptoSeq > 0 {
		// GREATEST: a late flush must not move the watermark back.
		if _, err := tx.Exec(ctx, `UPDATE projection_state SET upto_seq = GREATEST(upto_seq, $1) WHERE id = 1`, c.UptoSeq); err != nil {
			return fmt.Errorf("postgres: write projection state: %w", err)
		}
	}
	if c.TimelineUpto > 0 {
		if _, err := tx.Exec(ctx, `UPDATE projection_state SET timeline_upto = GREATEST(timeline_upto, $1) WHERE id = 1`, c.TimelineUpto); err != nil {
			return fmt.Errorf("postgres: write projection state: %w", err)
		}
	}
	return nil
}

// writeTimeline stores timeline runs, one row each, packed. A run that starts
// where a stored one does replaces it, as in SQLite: it is the same run written
// again, longer (a flush retried after a commit whose outcome was unknown).
func writeTimeline(ctx context.Context, tx pgx.Tx, runs []trustloop.TimelineRun) error {
	type key struct{ keyID, first int64 }
	at := make(map[key]int, len(runs))
	var keys, firsts []int64
	var packed [][]byte
	for _, r := range runs {
		if len(r.Seqs) == 0 {
			continue
		}
		k := key{r.KeyID, r.Seqs[0]}
		if i, ok := at[k]; ok {
			packed[i] = packSeqs(r.Seqs)
			continue
		}
		at[k] = len(keys)
		keys, firsts, packed = append(keys, r.KeyID), append(firsts, r.Seqs[0]), append(packed, packSeqs(r.Seqs))
	}
	if len(keys) == 0 {
		return nil
	}
	// In key order, like the other tables' rows (see writeProjection).
	order := make([]int, len(keys))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(keys[a], keys[b]), cmp.Compare(firsts[a], firsts[b]))
	})
	keys, firsts, packed = permute(keys, order), permute(firsts, order), permute(packed, order)
	if _, err := tx.Exec(ctx, `INSERT INTO timeline (key_id, first_seq, seqs)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])
		ON CONFLICT (key_id, first_seq) DO UPDATE SET seqs = excluded.seqs`, keys, firsts, packed); err != nil {
		return fmt.Errorf("postgres: write timeline: %w", err)
	}
	return nil
}

// permute returns s reordered: element i of the result is s[order[i]].
func permute[T any](s []T, order []int) []T {
	out := make([]T, len(order))
	for i, j := range order {
		out[i] = s[j]
	}
	return out
}

// packSeqs writes ascending positions as delta varints (SQLite's format).
func packSeqs(seqs []int64) []byte {
	var b []byte
	prev := int64(0)
	for _, q := range seqs {
		b = binary.AppendUvarint(b, uint64(q-prev))
		prev = q
	}
	return b
}

func unpackSeqs(b []byte) ([]int64, error) {
	var out []int64
	prev := int64(0)
	for len(b) > 0 {
		d, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errors.New("postgres: malformed timeline row")
		}
		prev += int64(d)
		out = append(out, prev)
		b = b[n:]
	}
	return out, nil
}

// writeProfiles upserts profiles. ON CONFLICT DO UPDATE may not touch one row
// twice in a statement, so repeats of an id are folded first into what writing
// them one after the other would leave: the first one's workspace and creation
// time, the last one's state.
func writeProfiles(ctx context.Context, tx pgx.Tx, ps []trustloop.ProfileRecord, behind bool) (map[int64]bool, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	at := make(map[int64]int, len(ps))
	var rows []trustloop.ProfileRecord
	for _, p := range ps {
		if i, ok := at[p.ID]; ok {
			p.WorkspaceID, p.CreatedAt = rows[i].WorkspaceID, rows[i].CreatedAt
			rows[i] = p
			continue
		}
		at[p.ID] = len(rows)
		rows = append(rows, p)
	}
	slices.SortFunc(rows, func(a, b trustloop.ProfileRecord) int { return cmp.Compare(a.ID, b.ID) })
	n := len(rows)
	ids, wss, keys, applied, merged := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	created, updated := make([]int64, n), make([]int64, n)
	states := make([][]byte, n)
	for i, p := range rows {
		ids[i], wss[i], keys[i], states[i], applied[i], merged[i] = p.ID, p.WorkspaceID, p.KeyID, nonNil(p.State), p.AppliedSeq, p.MergedInto
		created[i], updated[i] = ms(p.CreatedAt), ms(p.UpdatedAt)
	}
	rs, err := tx.Query(ctx, `INSERT INTO profiles (id, workspace_id, key_id, state, applied_seq, merged_into, created_at, updated_at)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
		ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, state = excluded.state, applied_seq = excluded.applied_seq,
		merged_into = excluded.merged_into, updated_at = excluded.updated_at
		WHERE profiles.workspace_id = excluded.workspace_id`+behindGuard(behind)+` RETURNING id`,
		ids, wss, keys, states, applied, merged, created, updated)
	if err != nil {
		return nil, fmt.Errorf("postgres: write profiles: %w", err)
	}
	written := make(map[int64]bool, n)
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			rs.Close()
			return nil, fmt.Errorf("postgres: write profiles: %w", err)
		}
		written[id] = true
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("postgres: write profiles: %w", err)
	}
	return written, nil
}

// behindGuard is the condition under which a flush may replace a stored profile
// (see trustloop.ProjectionChanges.Behind).
func behindGuard(behind bool) string {
	if !behind {
		return ""
	}
	return ` AND profiles.applied_seq <= excluded.applied_seq AND (profiles.merged_into = 0 OR excluded.merged_into <> 0)`
}

// writeIdentities inserts identities or moves them to another profile; repeats of
// one (workspace, blind) are folded as in writeProfiles: the first one's columns,
// the last one's profile.
func writeIdentities(ctx context.Context, tx pgx.Tx, ids []trustloop.IdentityRecord) error {
	if len(ids) == 0 {
		return nil
	}
	type key struct {
		ws    int64
		blind string
	}
	at := make(map[key]int, len(ids))
	var rows []trustloop.IdentityRecord
	for _, r := range ids {
		k := key{r.WorkspaceID, string(r.Blind)}
		if i, ok := at[k]; ok {
			rows[i].ProfileID = r.ProfileID
			continue
		}
		at[k] = len(rows)
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b trustloop.IdentityRecord) int {
		return cmp.Or(cmp.Compare(a.WorkspaceID, b.WorkspaceID), bytes.Compare(a.Blind, b.Blind))
	})
	n := len(rows)
	wss, profiles, keys, first := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	blinds, sealed := make([][]byte, n), make([][]byte, n)
	types := make([]string, n)
	for i, r := range rows {
		wss[i], blinds[i], types[i], profiles[i] = r.WorkspaceID, nonNil(r.Blind), r.Type, r.ProfileID
		keys[i], sealed[i], first[i] = r.KeyID, nonNil(r.Sealed), ms(r.FirstSeen)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO identities (workspace_id, blind, type, profile_id, key_id, sealed, first_seen)
		SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::bigint[], $5::bigint[], $6::bytea[], $7::bigint[])
		ON CONFLICT (workspace_id, blind) DO UPDATE SET profile_id = excluded.profile_id`,
		wss, blinds, types, profiles, keys, sealed, first); err != nil {
		return fmt.Errorf("postgres: write identities: %w", err)
	}
	return nil
}

// writeMerges inserts merge records; an id stored already is an error, as in
// SQLite (merge ids are the caller's and never reused).
func writeMerges(ctx context.Context, tx pgx.Tx, merges []trustloop.MergeRecord) error {
	if len(merges) == 0 {
		return nil
	}
	n := len(merges)
	ids, wss, into, from, at := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	moved, linking, hashes := make([][]byte, n), make([][]byte, n), make([][]byte, n)
	for i, m := range merges {
		ids[i], wss[i], into[i], from[i], at[i] = m.ID, m.WorkspaceID, m.Into, m.From, ms(m.At)
		moved[i], linking[i], hashes[i] = nonNil(packBlinds(m.Moved)), nonNil(packBlinds(m.Linking)), nonNil(m.MessageHash)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO merges (id, workspace_id, into_profile, from_profile, moved, linking, message_hash, at)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bytea[], $6::bytea[], $7::bytea[], $8::bigint[])`,
		ids, wss, into, from, moved, linking, hashes, at); err != nil {
		return fmt.Errorf("postgres: write merges: %w", err)
	}
	return nil
}

// writeMembers replaces the audience memberships of the listed profiles. With a
// workspace (SetMembers), only that workspace's audiences are touched; the
// projection path has none (ProjectionChanges carries no workspace) and, like
// SQLite, replaces by profile id alone.
func writeMembers(ctx context.Context, tx pgx.Tx, workspaceID int64, members map[int64][]int64) error {
	if len(members) == 0 {
		return nil
	}
	profiles := make([]int64, 0, len(members))
	for p := range members {
		profiles = append(profiles, p)
	}
	slices.Sort(profiles)
	var auds, profs []int64
	for _, p := range profiles {
		for _, a := range members[p] {
			auds, profs = append(auds, a), append(profs, p)
		}
	}
	del := `DELETE FROM audience_members WHERE profile_id = ANY($1::bigint[])`
	ins := `INSERT INTO audience_members (audience_id, profile_id)
		SELECT * FROM unnest($1::bigint[], $2::bigint[]) ON CONFLICT DO NOTHING`
	delArgs, insArgs := []any{profiles}, []any{auds, profs}
	if workspaceID != 0 {
		del += ` AND audience_id IN (SELECT id FROM audiences WHERE workspace_id = $2)`
		ins = `INSERT INTO audience_members (audience_id, profile_id)
			SELECT t.a, t.p FROM unnest($1::bigint[], $2::bigint[]) AS t(a, p)
			WHERE t.a IN (SELECT id FROM audiences WHERE workspace_id = $3) ON CONFLICT DO NOTHING`
		delArgs, insArgs = append(delArgs, workspaceID), append(insArgs, workspaceID)
	}
	if _, err := tx.Exec(ctx, del, delArgs...); err != nil {
		return fmt.Errorf("postgres: members: %w", err)
	}
	if len(auds) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, ins, insArgs...); err != nil {
		return fmt.Errorf("postgres: members: %w", err)
	}
	return nil
}

// nonNil turns a nil slice into an empty one: pgx sends nil as NULL, which the
// NOT NULL byte columns refuse, while the caller meant "no bytes".
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// packBlinds joins blind indexes, each prefixed by its length (one byte); the
// format is SQLite's, so both stores hold merges alike.
func packBlinds(bs [][]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, byte(len(b)))
		out = append(out, b...)
	}
	return out
}

func unpackBlinds(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		n := int(b[0])
		if len(b) < 1+n {
			return nil, errors.New("postgres: malformed blind list")
		}
		out = append(out, b[1:1+n])
		b = b[1+n:]
	}
	return out, nil
}

const identityCols = `workspace_id, blind, type, profile_id, key_id, sealed, first_seen`

func scanIdentity(sc pgx.Row) (trustloop.IdentityRecord, error) {
	var r trustloop.IdentityRecord
	var first int64
	err := sc.Scan(&r.WorkspaceID, &r.Blind, &r.Type, &r.ProfileID, &r.KeyID, &r.Sealed, &first)
	r.FirstSeen = fromMS(first)
	return r, err
}

// FindIdentities looks identities up by blind index, in one statement whatever
// their number.
func (db *DB) FindIdentities(ctx context.Context, workspaceID int64, blinds [][]byte) (map[string]trustloop.IdentityRecord, error) {
	out := make(map[string]trustloop.IdentityRecord, len(blinds))
	if len(blinds) == 0 {
		return out, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT `+identityCols+` FROM identities WHERE workspace_id = $1 AND blind = ANY($2::bytea[])`,
		workspaceID, blinds)
	if err != nil {
		return nil, fmt.Errorf("postgres: find identities: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanIdentity(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: find identities: %w", err)
		}
		out[string(r.Blind)] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: find identities: %w", err)
	}
	return out, nil
}

// ProfileIdentities returns a profile's identities by first_seen (then blind, so
// the order is stable).
func (db *DB) ProfileIdentities(ctx context.Context, workspaceID, profileID int64) ([]trustloop.IdentityRecord, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+identityCols+` FROM identities WHERE profile_id = $1 AND workspace_id = $2
		ORDER BY first_seen, blind`, profileID, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("postgres: profile identities: %w", err)
	}
	defer rows.Close()
	var out []trustloop.IdentityRecord
	for rows.Next() {
		r, err := scanIdentity(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: profile identities: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: profile identities: %w", err)
	}
	return out, nil
}

// IdentitiesOfProfiles returns the identities of several profiles, by first_seen
// (the projection loads a group's profiles with it in one statement).
func (db *DB) IdentitiesOfProfiles(ctx context.Context, workspaceID int64, profileIDs []int64) ([]trustloop.IdentityRecord, error) {
	if len(profileIDs) == 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT `+identityCols+` FROM identities WHERE workspace_id = $1 AND profile_id = ANY($2::bigint[])
		ORDER BY first_seen, blind`, workspaceID, profileIDs)
	if err != nil {
		return nil, fmt.Errorf("postgres: identities of profiles: %w", err)
	}
	defer rows.Close()
	var out []trustloop.IdentityRecord
	for rows.Next() {
		r, err := scanIdentity(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: identities of profiles: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: identities of profiles: %w", err)
	}
	return out, nil
}

// FindSubjectKeysByID looks subject keys up by id (the projection unwraps the
// keys of the events it replays).
func (db *DB) FindSubjectKeysByID(ctx context.Context, workspaceID int64, ids []int64) (map[int64]trustloop.SubjectKey, error) {
	out := make(map[int64]trustloop.SubjectKey, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	err := db.subjectKeys(ctx, workspaceID, `id = ANY($2::bigint[])`, ids, func(k trustloop.SubjectKey) { out[k.ID] = k })
	return out, err
}

const profileCols = `p.id, p.workspace_id, p.key_id, p.state, p.applied_seq, p.merged_into, p.created_at, p.updated_at`

func scanProfile(sc pgx.Row) (trustloop.ProfileRecord, error) {
	var p trustloop.ProfileRecord
	var created, updated int64
	err := sc.Scan(&p.ID, &p.WorkspaceID, &p.KeyID, &p.State, &p.AppliedSeq, &p.MergedInto, &created, &updated)
	p.CreatedAt, p.UpdatedAt = fromMS(created), fromMS(updated)
	return p, err
}

func (db *DB) queryProfiles(ctx context.Context, op, q string, args ...any) ([]trustloop.ProfileRecord, error) {
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, err)
	}
	defer rows.Close()
	var out []trustloop.ProfileRecord
	for rows.Next() {
		p, err := scanProfile(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: %s: %w", op, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, err)
	}
	return out, nil
}

// FindProfiles returns profiles by id, merged-away ones included.
func (db *DB) FindProfiles(ctx context.Context, workspaceID int64, ids []int64) (map[int64]trustloop.ProfileRecord, error) {
	out := make(map[int64]trustloop.ProfileRecord, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	ps, err := db.queryProfiles(ctx, "find profiles", `SELECT `+profileCols+` FROM profiles p
		WHERE p.workspace_id = $1 AND p.id = ANY($2::bigint[])`, workspaceID, ids)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		out[p.ID] = p
	}
	return out, nil
}

// ListProfiles pages through live profiles, optionally one audience's.
func (db *DB) ListProfiles(ctx context.Context, workspaceID, audienceID, after int64, limit int) ([]trustloop.ProfileRecord, error) {
	if audienceID != 0 {
		return db.queryProfiles(ctx, "list profiles", `SELECT `+profileCols+`
			FROM audience_members m JOIN profiles p ON p.id = m.profile_id
			WHERE m.audience_id = $1 AND p.workspace_id = $2 AND p.merged_into = 0 AND m.profile_id > $3
			ORDER BY m.profile_id LIMIT $4`, audienceID, workspaceID, after, limit)
	}
	return db.queryProfiles(ctx, "list profiles", `SELECT `+profileCols+` FROM profiles p
		WHERE p.workspace_id = $1 AND p.merged_into = 0 AND p.id > $2 ORDER BY p.id LIMIT $3`, workspaceID, after, limit)
}

// ProfileEvents returns the events of the keys' stored timelines, newest first.
func (db *DB) ProfileEvents(ctx context.Context, workspaceID int64, keyIDs []int64, before int64, limit int) ([]trustloop.StoredEvent, error) {
	if len(keyIDs) == 0 || limit <= 0 {
		return nil, nil
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	// A run holds only positions from its first on, so runs starting at or after
	// before have none to give.
	rows, err := db.pool.Query(ctx, `SELECT seqs FROM timeline WHERE key_id = ANY($1::bigint[]) AND first_seq < $2`, keyIDs, before)
	if err != nil {
		return nil, fmt.Errorf("postgres: timeline: %w", err)
	}
	var seqs []int64
	var packed []byte
	_, err = pgx.ForEachRow(rows, []any{&packed}, func() error {
		run, err := unpackSeqs(packed)
		for _, q := range run {
			if q < before {
				seqs = append(seqs, q)
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: timeline: %w", err)
	}
	// Newest first, a position written twice (a replay after a crash) once.
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	slices.Reverse(seqs)
	// Positions whose event is not this workspace's (or is gone) are skipped
	// and more are read, so that a short page still means the end.
	var out []trustloop.StoredEvent
	for len(seqs) > 0 && len(out) < limit {
		n := min(len(seqs), limit-len(out))
		evs, err := db.EventsBySeq(ctx, workspaceID, seqs[:n])
		if err != nil {
			return nil, err
		}
		seqs = seqs[n:]
		slices.Reverse(evs)
		out = append(out, evs...)
	}
	return out, nil
}

// EventsBySeq returns the workspace's events at the positions, in Seq order.
func (db *DB) EventsBySeq(ctx context.Context, workspaceID int64, seqs []int64) ([]trustloop.StoredEvent, error) {
	if len(seqs) == 0 {
		return nil, nil
	}
	return db.queryEvents(ctx, "events by seq", `SELECT seq, workspace_id, source_id, message_hash, key_id, type, received_at, ts, payload
		FROM events WHERE workspace_id = $1 AND seq = ANY($2::bigint[]) ORDER BY seq`, workspaceID, seqs)
}

// WriteProjection writes changes the projection made behind the group commits,
// in a transaction of their own.
func (db *DB) WriteProjection(ctx context.Context, c *trustloop.ProjectionChanges) error {
	err := retry(ctx, func() error {
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if err := writeProjection(ctx, tx, c); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	if err != nil && trustloop.ErrorCode(err) == trustloop.EINTERNAL {
		return fmt.Errorf("postgres: write projection: %w", err)
	}
	return err
}

// TimelineUpto returns the timelines' watermark.
func (db *DB) TimelineUpto(ctx context.Context) (int64, error) {
	var n int64
	if err := db.pool.QueryRow(ctx, `SELECT timeline_upto FROM projection_state WHERE id = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: projection state: %w", err)
	}
	return n, nil
}

// EventKeys returns events' positions and keys after a position.
func (db *DB) EventKeys(ctx context.Context, workspaceID, after int64, limit int) ([]trustloop.EventKey, error) {
	rows, err := db.pool.Query(ctx, `SELECT seq, key_id FROM events WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
		workspaceID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: event keys: %w", err)
	}
	defer rows.Close()
	var out []trustloop.EventKey
	for rows.Next() {
		var k trustloop.EventKey
		if err := rows.Scan(&k.Seq, &k.KeyID); err != nil {
			return nil, fmt.Errorf("postgres: event keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: event keys: %w", err)
	}
	return out, nil
}

// ProjectedUpto returns the projection's watermark.
func (db *DB) ProjectedUpto(ctx context.Context) (int64, error) {
	var n int64
	if err := db.pool.QueryRow(ctx, `SELECT upto_seq FROM projection_state WHERE id = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: projection state: %w", err)
	}
	return n, nil
}

const mergeCols = `id, workspace_id, into_profile, from_profile, moved, linking, message_hash, at, split_at`

func scanMerge(sc pgx.Row) (*trustloop.MergeRecord, error) {
	m := &trustloop.MergeRecord{}
	var moved, linking []byte
	var at int64
	var split *int64
	if err := sc.Scan(&m.ID, &m.WorkspaceID, &m.Into, &m.From, &moved, &linking, &m.MessageHash, &at, &split); err != nil {
		return nil, err
	}
	m.At = fromMS(at)
	if split != nil {
		t := fromMS(*split)
		m.SplitAt = &t
	}
	var err error
	if m.Moved, err = unpackBlinds(moved); err != nil {
		return nil, err
	}
	m.Linking, err = unpackBlinds(linking)
	return m, err
}

// FindMerge returns one merge record.
func (db *DB) FindMerge(ctx context.Context, workspaceID, id int64) (*trustloop.MergeRecord, error) {
	m, err := scanMerge(db.pool.QueryRow(ctx, `SELECT `+mergeCols+` FROM merges WHERE id = $1 AND workspace_id = $2`, id, workspaceID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "Merge not found.").WithHint("List a profile's merges with GET /v1/profiles/{id}/merges.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: find merge: %w", err)
	}
	return m, nil
}

// ProfileMerges returns the merges touching a profile, newest first (merge ids
// are the caller's and increase with time, as in SQLite).
func (db *DB) ProfileMerges(ctx context.Context, workspaceID, profileID int64) ([]trustloop.MergeRecord, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+mergeCols+` FROM merges WHERE workspace_id = $1 AND (into_profile = $2 OR from_profile = $2)
		ORDER BY id DESC`, workspaceID, profileID)
	if err != nil {
		return nil, fmt.Errorf("postgres: profile merges: %w", err)
	}
	defer rows.Close()
	var out []trustloop.MergeRecord
	for rows.Next() {
		m, err := scanMerge(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: profile merges: %w", err)
		}
		out = append(out, *m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: profile merges: %w", err)
	}
	return out, nil
}

// pair orders a separated pair so that it has one row whichever way it is asked.
func pair(a, b int64) (int64, int64) {
	if a > b {
		return b, a
	}
	return a, b
}

// Separated reports whether a split keeps the two profiles apart.
func (db *DB) Separated(ctx context.Context, workspaceID, a, b int64) (bool, error) {
	a, b = pair(a, b)
	var found bool
	if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM separations WHERE workspace_id = $1 AND a = $2 AND b = $3)`,
		workspaceID, a, b).Scan(&found); err != nil {
		return false, fmt.Errorf("postgres: separated: %w", err)
	}
	return found, nil
}

// Split undoes a merge in one transaction. Two splits of one merge (on any nodes)
// are ordered by the merge row's lock: the second finds split_at set and gets
// ECONFLICT.
func (db *DB) Split(ctx context.Context, m *trustloop.MergeRecord, into, from trustloop.ProfileRecord) error {
	err := retry(ctx, func() error {
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		tag, err := tx.Exec(ctx, `UPDATE merges SET split_at = $1 WHERE id = $2 AND workspace_id = $3 AND split_at IS NULL`,
			ms(db.Now()), m.ID, m.WorkspaceID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return trustloop.Errorf(trustloop.ECONFLICT, "This merge was undone already.").
				WithHint("A merge is undone once; list the current ones with GET /v1/profiles/{id}/merges.")
		}
		if len(m.Moved) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE identities SET profile_id = $1 WHERE workspace_id = $2 AND blind = ANY($3::bytea[])`,
				m.From, m.WorkspaceID, m.Moved); err != nil {
				return err
			}
		}
		a, b := pair(m.Into, m.From)
		if _, err := tx.Exec(ctx, `INSERT INTO separations (workspace_id, a, b) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			m.WorkspaceID, a, b); err != nil {
			return err
		}
		if _, err := writeProfiles(ctx, tx, []trustloop.ProfileRecord{into, from}, false); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	if err != nil && trustloop.ErrorCode(err) == trustloop.EINTERNAL {
		return fmt.Errorf("postgres: split: %w", err)
	}
	return err
}

const audienceCols = `id, workspace_id, name, rule, description, created_at, updated_at`

func scanAudience(sc pgx.Row) (*trustloop.Audience, error) {
	a := &trustloop.Audience{}
	var created, updated int64
	err := sc.Scan(&a.ID, &a.WorkspaceID, &a.Name, &a.Rule, &a.Description, &created, &updated)
	a.CreatedAt, a.UpdatedAt = fromMS(created), fromMS(updated)
	return a, err
}

// audienceErr maps the (workspace, name) unique violation to ECONFLICT; the only
// unique constraints an audience write can break are that one and the id.
func audienceErr(err error, op string) error {
	if isUniqueViolation(err) {
		return trustloop.Errorf(trustloop.ECONFLICT, "An audience with this name exists already.").WithHint("Choose another name or update that audience.")
	}
	return fmt.Errorf("postgres: %s audience: %w", op, err)
}

// CreateAudience stores a new audience.
func (db *DB) CreateAudience(ctx context.Context, a *trustloop.Audience) error {
	now := fromMS(ms(db.Now()))
	if err := db.pool.QueryRow(ctx, `INSERT INTO audiences (workspace_id, name, rule, description, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $5) RETURNING id`, a.WorkspaceID, a.Name, a.Rule, a.Description, ms(now)).Scan(&a.ID); err != nil {
		return audienceErr(err, "create")
	}
	a.CreatedAt, a.UpdatedAt = now, now
	return nil
}

// UpdateAudience replaces an audience's name, rule and description.
func (db *DB) UpdateAudience(ctx context.Context, a *trustloop.Audience) error {
	now := fromMS(ms(db.Now()))
	tag, err := db.pool.Exec(ctx, `UPDATE audiences SET name = $1, rule = $2, description = $3, updated_at = $4
		WHERE id = $5 AND workspace_id = $6`, a.Name, a.Rule, a.Description, ms(now), a.ID, a.WorkspaceID)
	if err != nil {
		return audienceErr(err, "update")
	}
	if tag.RowsAffected() == 0 {
		return trustloop.Errorf(trustloop.ENOTFOUND, "Audience not found.").
			WithHint("List audiences with GET /v1/audiences.")
	}
	a.UpdatedAt = now
	return nil
}

// DeleteAudience removes an audience and its memberships in one transaction.
func (db *DB) DeleteAudience(ctx context.Context, workspaceID, id int64) error {
	err := retry(ctx, func() error {
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		tag, err := tx.Exec(ctx, `DELETE FROM audiences WHERE id = $1 AND workspace_id = $2`, id, workspaceID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return trustloop.Errorf(trustloop.ENOTFOUND, "Audience not found.").
				WithHint("List audiences with GET /v1/audiences.")
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audience_members WHERE audience_id = $1`, id); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	if err != nil && trustloop.ErrorCode(err) == trustloop.EINTERNAL {
		return fmt.Errorf("postgres: delete audience: %w", err)
	}
	return err
}

// ListAudiences returns a workspace's audiences by id.
func (db *DB) ListAudiences(ctx context.Context, workspaceID int64) ([]*trustloop.Audience, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+audienceCols+` FROM audiences WHERE workspace_id = $1 ORDER BY id`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("postgres: list audiences: %w", err)
	}
	defer rows.Close()
	var out []*trustloop.Audience
	for rows.Next() {
		a, err := scanAudience(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: list audiences: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list audiences: %w", err)
	}
	return out, nil
}

// FindAudience returns one audience.
func (db *DB) FindAudience(ctx context.Context, workspaceID, id int64) (*trustloop.Audience, error) {
	a, err := scanAudience(db.pool.QueryRow(ctx, `SELECT `+audienceCols+` FROM audiences WHERE id = $1 AND workspace_id = $2`, id, workspaceID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "Audience not found.").WithHint("List audiences with GET /v1/audiences.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: find audience: %w", err)
	}
	return a, nil
}

// ProfileAudiences returns a profile's audience ids, ascending.
func (db *DB) ProfileAudiences(ctx context.Context, workspaceID, profileID int64) ([]int64, error) {
	rows, err := db.pool.Query(ctx, `SELECT m.audience_id FROM audience_members m JOIN audiences a ON a.id = m.audience_id
		WHERE m.profile_id = $1 AND a.workspace_id = $2 ORDER BY m.audience_id`, profileID, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("postgres: profile audiences: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("postgres: profile audiences: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: profile audiences: %w", err)
	}
	return out, nil
}

// SetMembers replaces the memberships of the given profiles in the workspace's
// audiences, in one transaction.
func (db *DB) SetMembers(ctx context.Context, workspaceID int64, members map[int64][]int64) error {
	if len(members) == 0 {
		return nil
	}
	err := retry(ctx, func() error {
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if err := writeMembers(ctx, tx, workspaceID, members); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	if err != nil && trustloop.ErrorCode(err) == trustloop.EINTERNAL {
		return fmt.Errorf("postgres: members: %w", err)
	}
	return err
}

// TimelineSeqs returns the positions the keys' timelines list, ascending.
func (db *DB) TimelineSeqs(ctx context.Context, keyIDs []int64) ([]int64, error) {
	if len(keyIDs) == 0 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT seqs FROM timeline WHERE key_id = ANY($1::bigint[])`, keyIDs)
	if err != nil {
		return nil, fmt.Errorf("postgres: timeline: %w", err)
	}
	var seqs []int64
	var packed []byte
	_, err = pgx.ForEachRow(rows, []any{&packed}, func() error {
		run, err := unpackSeqs(packed)
		seqs = append(seqs, run...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: timeline: %w", err)
	}
	slices.Sort(seqs)
	return slices.Compact(seqs), nil
}
