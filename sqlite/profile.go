package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/trustloop/trustloop"
)

// writeProjection writes profile-side changes in a transaction: a group
// commit's, or a flush's. Statements are prepared once per call, not per row.
func writeProjection(ctx context.Context, tx *sql.Tx, c *trustloop.ProjectionChanges) error {
	members := c.Members
	if c.Behind && len(members) > 0 {
		members = make(map[int64][]int64, len(c.Members))
		for id, m := range c.Members {
			members[id] = m
		}
	}
	if err := writeProfiles(ctx, tx, c, members); err != nil {
		return err
	}
	if len(c.Timeline) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO timeline (key_id, first_seq, seqs) VALUES (?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("sqlite: write timeline: %w", err)
		}
		defer st.Close()
		for _, r := range c.Timeline {
			if len(r.Seqs) == 0 {
				continue
			}
			if _, err := st.ExecContext(ctx, r.KeyID, r.Seqs[0], packSeqs(r.Seqs)); err != nil {
				return fmt.Errorf("sqlite: write timeline: %w", err)
			}
		}
	}
	if c.UptoSeq > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE projection_state SET upto_seq = MAX(upto_seq, ?) WHERE id = 1`, c.UptoSeq); err != nil {
			return fmt.Errorf("sqlite: write projection state: %w", err)
		}
	}
	if c.TimelineUpto > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE projection_state SET timeline_upto = MAX(timeline_upto, ?) WHERE id = 1`, c.TimelineUpto); err != nil {
			return fmt.Errorf("sqlite: write projection state: %w", err)
		}
	}
	if len(c.Identities) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT INTO identities (workspace_id, blind, type, profile_id, key_id, sealed, first_seen)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id, blind) DO UPDATE SET profile_id = excluded.profile_id`)
		if err != nil {
			return fmt.Errorf("sqlite: write identity: %w", err)
		}
		defer st.Close()
		for _, id := range c.Identities {
			if _, err := st.ExecContext(ctx, id.WorkspaceID, id.Blind, id.Type, id.ProfileID, id.KeyID, id.Sealed, ms(id.FirstSeen)); err != nil {
				return fmt.Errorf("sqlite: write identity: %w", err)
			}
		}
	}
	for _, m := range c.Merges {
		if _, err := tx.ExecContext(ctx, `INSERT INTO merges (id, workspace_id, into_profile, from_profile, moved, linking, message_hash, at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, m.ID, m.WorkspaceID, m.Into, m.From, packBlinds(m.Moved), packBlinds(m.Linking),
			m.MessageHash, ms(m.At)); err != nil {
			return fmt.Errorf("sqlite: write merge: %w", err)
		}
	}
	return setMembers(ctx, tx, members)
}

// profileRows is how many profile rows one statement writes: a flush writes
// thousands, and each statement costs more than its row.
const profileRows = 64

// writeProfiles inserts or replaces profile rows, profileRows per statement.
// A row whose memberships are written too goes alone, so that its guard's outcome
// is known (see below).
func writeProfiles(ctx context.Context, tx *sql.Tx, c *trustloop.ProjectionChanges, members map[int64][]int64) error {
	if len(c.Profiles) == 0 {
		return nil
	}
	stmts := map[int]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	exec := func(rows []trustloop.ProfileRecord) (int64, error) {
		st := stmts[len(rows)]
		if st == nil {
			var err error
			st, err = tx.PrepareContext(ctx, `INSERT INTO profiles (id, workspace_id, key_id, state, applied_seq, merged_into, created_at, updated_at)
				VALUES `+strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, ?), ", len(rows)), ", ")+`
				ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id, state = excluded.state,
				applied_seq = excluded.applied_seq, merged_into = excluded.merged_into, updated_at = excluded.updated_at
				WHERE profiles.workspace_id = excluded.workspace_id`+behindGuard(c.Behind))
			if err != nil {
				return 0, err
			}
			stmts[len(rows)] = st
		}
		args := make([]any, 0, 8*len(rows))
		for _, p := range rows {
			args = append(args, p.ID, p.WorkspaceID, p.KeyID, p.State, p.AppliedSeq, p.MergedInto, ms(p.CreatedAt), ms(p.UpdatedAt))
		}
		res, err := st.ExecContext(ctx, args...)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	}
	var batch []trustloop.ProfileRecord
	for i, p := range c.Profiles {
		if _, ok := members[p.ID]; ok && c.Behind {
			n, err := exec([]trustloop.ProfileRecord{p})
			if err != nil {
				return fmt.Errorf("sqlite: write profile: %w", err)
			}
			if n == 0 {
				// The guard kept a newer row (a commit wrote it since): its
				// memberships, written with it, stand too.
				delete(members, p.ID)
			}
		} else {
			batch = append(batch, p)
		}
		if len(batch) == profileRows || (i == len(c.Profiles)-1 && len(batch) > 0) {
			if _, err := exec(batch); err != nil {
				return fmt.Errorf("sqlite: write profile: %w", err)
			}
			batch = batch[:0]
		}
	}
	return nil
}

// setMembers replaces profiles' memberships in the workspace's audiences (0: the
// workspace of each profile's row, as a group commit or flush knows it).
// behindGuard is the condition under which a flush may replace a stored profile
// (see ProjectionChanges.Behind).
func behindGuard(behind bool) string {
	if !behind {
		return ""
	}
	return ` AND profiles.applied_seq <= excluded.applied_seq AND (profiles.merged_into = 0 OR excluded.merged_into <> 0)`
}

func setMembers(ctx context.Context, tx *sql.Tx, members map[int64][]int64) error {
	for profile, auds := range members {
		// Only audiences of the profile's own workspace: a membership never
		// crosses workspaces, whatever the caller passes.
		if _, err := tx.ExecContext(ctx, `DELETE FROM audience_members WHERE profile_id = ?`, profile); err != nil {
			return fmt.Errorf("sqlite: members: %w", err)
		}
		for _, a := range auds {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO audience_members (audience_id, profile_id)
				SELECT a.id, p.id FROM audiences a JOIN profiles p ON p.workspace_id = a.workspace_id WHERE a.id = ? AND p.id = ?`, a, profile); err != nil {
				return fmt.Errorf("sqlite: members: %w", err)
			}
		}
	}
	return nil
}

// packBlinds joins blind indexes, each prefixed by its length (one byte).
func packBlinds(bs [][]byte) []byte {
	out := []byte{} // never NULL: the columns are NOT NULL
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
			return nil, errors.New("sqlite: malformed blind list")
		}
		out = append(out, b[1:1+n])
		b = b[1+n:]
	}
	return out, nil
}

const identityCols = `workspace_id, blind, type, profile_id, key_id, sealed, first_seen`

func scanIdentity(sc interface{ Scan(...any) error }) (trustloop.IdentityRecord, error) {
	var r trustloop.IdentityRecord
	var first int64
	err := sc.Scan(&r.WorkspaceID, &r.Blind, &r.Type, &r.ProfileID, &r.KeyID, &r.Sealed, &first)
	r.FirstSeen = fromMS(first)
	return r, err
}

// FindIdentities looks identities up by blind index.
func (db *DB) FindIdentities(ctx context.Context, workspaceID int64, blinds [][]byte) (map[string]trustloop.IdentityRecord, error) {
	out := make(map[string]trustloop.IdentityRecord, len(blinds))
	err := queryIn(ctx, db.read, "find identities", `SELECT `+identityCols+` FROM identities WHERE workspace_id = ? AND blind IN (%s)`,
		workspaceID, blinds, func(rows *sql.Rows) error {
			r, err := scanIdentity(rows)
			out[string(r.Blind)] = r
			return err
		})
	return out, err
}

// ProfileIdentities returns a profile's identities by first_seen.
func (db *DB) ProfileIdentities(ctx context.Context, workspaceID, profileID int64) ([]trustloop.IdentityRecord, error) {
	rows, err := db.query(ctx, `SELECT `+identityCols+` FROM identities WHERE profile_id = ? AND workspace_id = ?
		ORDER BY first_seen, blind`, profileID, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: profile identities: %w", err)
	}
	defer rows.Close()
	var out []trustloop.IdentityRecord
	for rows.Next() {
		r, err := scanIdentity(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: profile identities: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

const profileCols = `id, workspace_id, key_id, state, applied_seq, merged_into, created_at, updated_at`

func scanProfile(sc interface{ Scan(...any) error }) (trustloop.ProfileRecord, error) {
	var p trustloop.ProfileRecord
	var created, updated int64
	err := sc.Scan(&p.ID, &p.WorkspaceID, &p.KeyID, &p.State, &p.AppliedSeq, &p.MergedInto, &created, &updated)
	p.CreatedAt, p.UpdatedAt = fromMS(created), fromMS(updated)
	return p, err
}

// FindProfiles returns profiles by id.
func (db *DB) FindProfiles(ctx context.Context, workspaceID int64, ids []int64) (map[int64]trustloop.ProfileRecord, error) {
	out := make(map[int64]trustloop.ProfileRecord, len(ids))
	err := queryIn(ctx, db.read, "find profiles", `SELECT `+profileCols+` FROM profiles WHERE +workspace_id = ? AND id IN (%s)`,
		workspaceID, ids, func(rows *sql.Rows) error {
			p, err := scanProfile(rows)
			out[p.ID] = p
			return err
		})
	return out, err
}

// ListProfiles pages through live profiles, optionally one audience's.
func (db *DB) ListProfiles(ctx context.Context, workspaceID, audienceID, after int64, limit int) ([]trustloop.ProfileRecord, error) {
	q := `SELECT ` + profileCols + ` FROM profiles WHERE workspace_id = ? AND merged_into = 0 AND id > ? ORDER BY id LIMIT ?`
	args := []any{workspaceID, after, limit}
	if audienceID != 0 {
		q = `SELECT p.id, p.workspace_id, p.key_id, p.state, p.applied_seq, p.merged_into, p.created_at, p.updated_at
			FROM audience_members m JOIN profiles p ON p.id = m.profile_id
			WHERE m.audience_id = ? AND p.workspace_id = ? AND p.merged_into = 0 AND m.profile_id > ? ORDER BY m.profile_id LIMIT ?`
		args = []any{audienceID, workspaceID, after, limit}
	}
	rows, err := db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list profiles: %w", err)
	}
	defer rows.Close()
	var out []trustloop.ProfileRecord
	for rows.Next() {
		p, err := scanProfile(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list profiles: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// ProfileEvents returns the events of the keys' stored timelines, newest first.
func (db *DB) ProfileEvents(ctx context.Context, workspaceID int64, keyIDs []int64, before int64, limit int) ([]trustloop.StoredEvent, error) {
	if len(keyIDs) == 0 {
		return nil, nil
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	args := make([]any, 0, len(keyIDs)+1)
	for _, k := range keyIDs {
		args = append(args, k)
	}
	args = append(args, before)
	rows, err := db.read.QueryContext(ctx, `SELECT seqs FROM timeline WHERE key_id IN (`+marks(len(keyIDs))+`) AND first_seq < ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: timeline: %w", err)
	}
	var seqs []int64
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: timeline: %w", err)
		}
		for _, q := range unpackSeqs(b) {
			if q < before {
				seqs = append(seqs, q)
			}
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("sqlite: timeline: %w", err)
	}
	// Positions whose event is gone (erased) or of another workspace are skipped,
	// so take positions until the page is full.
	seqs = newestDistinct(seqs, len(seqs))
	var out []trustloop.StoredEvent
	for len(seqs) > 0 && len(out) < limit {
		part := seqs[:min(len(seqs), limit-len(out))]
		seqs = seqs[len(part):]
		evs, err := db.EventsBySeq(ctx, workspaceID, part)
		if err != nil {
			return nil, err
		}
		slices.Reverse(evs)
		out = append(out, evs...)
	}
	return out, nil
}

// newestDistinct sorts positions newest first, drops repeats (a replay after a
// crash may write a position twice) and keeps at most limit.
func newestDistinct(seqs []int64, limit int) []int64 {
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	slices.Reverse(seqs)
	return seqs[:max(0, min(len(seqs), limit))]
}

// EventsBySeq returns events by log position, in Seq order.
func (db *DB) EventsBySeq(ctx context.Context, workspaceID int64, seqs []int64) ([]trustloop.StoredEvent, error) {
	var out []trustloop.StoredEvent
	for start := 0; start < len(seqs); start += findChunk {
		part := seqs[start:min(start+findChunk, len(seqs))]
		args := make([]any, 0, len(part)+1)
		args = append(args, workspaceID)
		for _, q := range part {
			args = append(args, q)
		}
		evs, err := db.queryEvents(ctx, `SELECT seq, workspace_id, source_id, message_hash, key_id, type, received_at, ts, payload, seg, off, len
			FROM events WHERE workspace_id = ? AND seq IN (`+marks(len(part))+`)`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	slices.SortFunc(out, func(a, b trustloop.StoredEvent) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// packSeqs writes ascending positions as delta varints.
func packSeqs(seqs []int64) []byte {
	var b []byte
	prev := int64(0)
	for _, q := range seqs {
		b = binary.AppendUvarint(b, uint64(q-prev))
		prev = q
	}
	return b
}

func unpackSeqs(b []byte) []int64 {
	var out []int64
	prev := int64(0)
	for len(b) > 0 {
		d, n := binary.Uvarint(b)
		if n <= 0 {
			break
		}
		prev += int64(d)
		out = append(out, prev)
		b = b[n:]
	}
	return out
}

// WriteProjection writes changes in their own transaction, ordered with group
// commits on the writer connection.
func (db *DB) WriteProjection(ctx context.Context, c *trustloop.ProjectionChanges) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: write projection: %w", err)
	}
	defer tx.Rollback()
	if err := writeProjection(ctx, tx, c); err != nil {
		return err
	}
	return tx.Commit()
}

// TimelineUpto returns the timelines' watermark.
func (db *DB) TimelineUpto(ctx context.Context) (int64, error) {
	var n int64
	if err := db.read.QueryRowContext(ctx, `SELECT timeline_upto FROM projection_state WHERE id = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: projection state: %w", err)
	}
	return n, nil
}

// EventKeys returns events' positions and keys after a position.
func (db *DB) EventKeys(ctx context.Context, workspaceID, after int64, limit int) ([]trustloop.EventKey, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT seq, key_id FROM events WHERE workspace_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
		workspaceID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: event keys: %w", err)
	}
	defer rows.Close()
	var out []trustloop.EventKey
	for rows.Next() {
		var k trustloop.EventKey
		if err := rows.Scan(&k.Seq, &k.KeyID); err != nil {
			return nil, fmt.Errorf("sqlite: event keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: event keys: %w", err)
	}
	return out, nil
}

// ProjectedUpto returns the projection's watermark.
func (db *DB) ProjectedUpto(ctx context.Context) (int64, error) {
	var n int64
	if err := db.read.QueryRowContext(ctx, `SELECT upto_seq FROM projection_state WHERE id = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: projection state: %w", err)
	}
	return n, nil
}

const mergeCols = `id, workspace_id, into_profile, from_profile, moved, linking, message_hash, at, split_at`

func scanMerge(sc interface{ Scan(...any) error }) (*trustloop.MergeRecord, error) {
	m := &trustloop.MergeRecord{}
	var moved, linking []byte
	var at int64
	var split sql.NullInt64
	if err := sc.Scan(&m.ID, &m.WorkspaceID, &m.Into, &m.From, &moved, &linking, &m.MessageHash, &at, &split); err != nil {
		return nil, err
	}
	m.At = fromMS(at)
	if split.Valid {
		t := fromMS(split.Int64)
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
	m, err := scanMerge(db.read.QueryRowContext(ctx, `SELECT `+mergeCols+` FROM merges WHERE id = ? AND workspace_id = ?`, id, workspaceID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "Merge not found.").WithHint("List a profile's merges with GET /v1/profiles/{id}/merges.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: find merge: %w", err)
	}
	return m, nil
}

// ProfileMerges returns the merges touching a profile, newest first.
func (db *DB) ProfileMerges(ctx context.Context, workspaceID, profileID int64) ([]trustloop.MergeRecord, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+mergeCols+` FROM merges WHERE workspace_id = ? AND (into_profile = ? OR from_profile = ?) ORDER BY id DESC`,
		workspaceID, profileID, profileID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: profile merges: %w", err)
	}
	defer rows.Close()
	var out []trustloop.MergeRecord
	for rows.Next() {
		m, err := scanMerge(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: profile merges: %w", err)
		}
		out = append(out, *m)
	}
	return out, rows.Err()
}

func pair(a, b int64) (int64, int64) {
	if a > b {
		return b, a
	}
	return a, b
}

// Separated reports whether a split keeps the two profiles apart.
func (db *DB) Separated(ctx context.Context, workspaceID, a, b int64) (bool, error) {
	a, b = pair(a, b)
	var n int
	if err := db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM separations WHERE workspace_id = ? AND a = ? AND b = ?`, workspaceID, a, b).Scan(&n); err != nil {
		return false, fmt.Errorf("sqlite: separated: %w", err)
	}
	return n > 0, nil
}

// Split undoes a merge. It runs on the writer connection, so it is ordered with
// group commits (the ingest writer and a split never interleave).
func (db *DB) Split(ctx context.Context, m *trustloop.MergeRecord, into, from trustloop.ProfileRecord) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: split: %w", err)
	}
	defer tx.Rollback()
	now := ms(db.Now())
	res, err := tx.ExecContext(ctx, `UPDATE merges SET split_at = ? WHERE id = ? AND workspace_id = ? AND split_at IS NULL`, now, m.ID, m.WorkspaceID)
	if err != nil {
		return fmt.Errorf("sqlite: split: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return trustloop.Errorf(trustloop.ECONFLICT, "This merge was undone already.").
			WithHint("A merge is undone once; list the current ones with GET /v1/profiles/{id}/merges.")
	}
	for _, b := range m.Moved {
		if _, err := tx.ExecContext(ctx, `UPDATE identities SET profile_id = ? WHERE workspace_id = ? AND blind = ?`, m.From, m.WorkspaceID, b); err != nil {
			return fmt.Errorf("sqlite: split: %w", err)
		}
	}
	a, b := pair(m.Into, m.From)
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO separations (workspace_id, a, b) VALUES (?, ?, ?)`, m.WorkspaceID, a, b); err != nil {
		return fmt.Errorf("sqlite: split: %w", err)
	}
	if err := writeProjection(ctx, tx, &trustloop.ProjectionChanges{Profiles: []trustloop.ProfileRecord{into, from}}); err != nil {
		return err
	}
	return tx.Commit()
}

const audienceCols = `id, workspace_id, name, rule, description, created_at, updated_at`

func scanAudience(sc interface{ Scan(...any) error }) (*trustloop.Audience, error) {
	a := &trustloop.Audience{}
	var created, updated int64
	err := sc.Scan(&a.ID, &a.WorkspaceID, &a.Name, &a.Rule, &a.Description, &created, &updated)
	a.CreatedAt, a.UpdatedAt = fromMS(created), fromMS(updated)
	return a, err
}

func audienceErr(err error, op string) error {
	if err != nil && strings.Contains(err.Error(), "UNIQUE") {
		return trustloop.Errorf(trustloop.ECONFLICT, "An audience with this name exists already.").WithHint("Choose another name or update that audience.")
	}
	return fmt.Errorf("sqlite: %s audience: %w", op, err)
}

// CreateAudience stores a new audience.
func (db *DB) CreateAudience(ctx context.Context, a *trustloop.Audience) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	now := db.Now().UTC()
	res, err := db.write.ExecContext(ctx, `INSERT INTO audiences (workspace_id, name, rule, description, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
		a.WorkspaceID, a.Name, a.Rule, a.Description, ms(now), ms(now))
	if err != nil {
		return audienceErr(err, "create")
	}
	a.ID, _ = res.LastInsertId()
	a.CreatedAt, a.UpdatedAt = fromMS(ms(now)), fromMS(ms(now))
	return nil
}

// UpdateAudience replaces an audience's name, rule and description.
func (db *DB) UpdateAudience(ctx context.Context, a *trustloop.Audience) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	now := db.Now().UTC()
	res, err := db.write.ExecContext(ctx, `UPDATE audiences SET name = ?, rule = ?, description = ?, updated_at = ? WHERE id = ? AND workspace_id = ?`,
		a.Name, a.Rule, a.Description, ms(now), a.ID, a.WorkspaceID)
	if err != nil {
		return audienceErr(err, "update")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return trustloop.Errorf(trustloop.ENOTFOUND, "Audience not found.").
			WithHint("List audiences with GET /v1/audiences.")
	}
	a.UpdatedAt = fromMS(ms(now))
	return nil
}

// DeleteAudience removes an audience and its memberships.
func (db *DB) DeleteAudience(ctx context.Context, workspaceID, id int64) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: delete audience: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM audiences WHERE id = ? AND workspace_id = ?`, id, workspaceID)
	if err != nil {
		return fmt.Errorf("sqlite: delete audience: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return trustloop.Errorf(trustloop.ENOTFOUND, "Audience not found.").
			WithHint("List audiences with GET /v1/audiences.")
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM audience_members WHERE audience_id = ?`, id); err != nil {
		return fmt.Errorf("sqlite: delete audience: %w", err)
	}
	return tx.Commit()
}

// ListAudiences returns a workspace's audiences.
func (db *DB) ListAudiences(ctx context.Context, workspaceID int64) ([]*trustloop.Audience, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT `+audienceCols+` FROM audiences WHERE workspace_id = ? ORDER BY id`, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list audiences: %w", err)
	}
	defer rows.Close()
	var out []*trustloop.Audience
	for rows.Next() {
		a, err := scanAudience(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list audiences: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// FindAudience returns one audience.
func (db *DB) FindAudience(ctx context.Context, workspaceID, id int64) (*trustloop.Audience, error) {
	a, err := scanAudience(db.read.QueryRowContext(ctx, `SELECT `+audienceCols+` FROM audiences WHERE id = ? AND workspace_id = ?`, id, workspaceID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "Audience not found.").WithHint("List audiences with GET /v1/audiences.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: find audience: %w", err)
	}
	return a, nil
}

// ProfileAudiences returns a profile's audience ids, ascending.
func (db *DB) ProfileAudiences(ctx context.Context, workspaceID, profileID int64) ([]int64, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT m.audience_id FROM audience_members m JOIN audiences a ON a.id = m.audience_id
		WHERE m.profile_id = ? AND a.workspace_id = ?`, profileID, workspaceID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: profile audiences: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: profile audiences: %w", err)
		}
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, rows.Err()
}

// SetMembers replaces the memberships of the given profiles.
func (db *DB) SetMembers(ctx context.Context, workspaceID int64, members map[int64][]int64) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: members: %w", err)
	}
	defer tx.Rollback()
	if err := setMembers(ctx, tx, members); err != nil {
		return err
	}
	return tx.Commit()
}

// IdentitiesOfProfiles returns the identities of several profiles.
func (db *DB) IdentitiesOfProfiles(ctx context.Context, workspaceID int64, profileIDs []int64) ([]trustloop.IdentityRecord, error) {
	var out []trustloop.IdentityRecord
	err := queryIn(ctx, db.read, "identities of profiles", `SELECT `+identityCols+` FROM identities WHERE +workspace_id = ? AND profile_id IN (%s)
		ORDER BY first_seen, blind`, workspaceID, profileIDs, func(rows *sql.Rows) error {
		r, err := scanIdentity(rows)
		out = append(out, r)
		return err
	})
	return out, err
}

// FindSubjectKeysByID looks subject keys up by id.
func (db *DB) FindSubjectKeysByID(ctx context.Context, workspaceID int64, ids []int64) (map[int64]trustloop.SubjectKey, error) {
	out := make(map[int64]trustloop.SubjectKey, len(ids))
	err := queryIn(ctx, db.read, "find subject keys", `SELECT id, blind, wrapped, created_at FROM subject_keys WHERE +workspace_id = ? AND id IN (%s)`,
		workspaceID, ids, func(rows *sql.Rows) error {
			k, err := scanSubjectKey(rows, workspaceID)
			out[k.ID] = k
			return err
		})
	return out, err
}

// TimelineSeqs returns the positions the keys' timelines list, ascending.
func (db *DB) TimelineSeqs(ctx context.Context, keyIDs []int64) ([]int64, error) {
	if len(keyIDs) == 0 {
		return nil, nil
	}
	rows, err := db.read.QueryContext(ctx, `SELECT seqs FROM timeline WHERE key_id IN (`+marks(len(keyIDs))+`)`, int64Args(keyIDs)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: timeline: %w", err)
	}
	defer rows.Close()
	var seqs []int64
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("sqlite: timeline: %w", err)
		}
		seqs = append(seqs, unpackSeqs(b)...)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: timeline: %w", err)
	}
	slices.Sort(seqs)
	return slices.Compact(seqs), nil
}
