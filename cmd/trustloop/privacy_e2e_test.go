package main_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/postgres"
	"github.com/trustloop/trustloop/postgres/pgtest"
	"github.com/trustloop/trustloop/storetest"
)

// Erasure end to end (issue 5, T6): a customer known across devices, merged,
// with consent changes and reads, is erased; then no API path shows anything
// of them, no file of the data directory holds their values, blind indexes or
// wrapped keys, the audit log still verifies, and (on PostgreSQL) no row of
// any table names them. A second customer is untouched.

// person is one customer's unique values.
type person struct {
	user, anon, anon2, email, name, phone, device string
}

func newPerson(run, tag string) person {
	return person{user: "uid-" + tag + "-" + run, anon: "anon-" + tag + "-" + run, anon2: "anon2-" + tag + "-" + run,
		email: "Erin." + tag + "." + run + "@Example.org", name: "Erin Quaxley " + tag + run,
		phone: fmt.Sprintf("+4915%08d", (int(run[0])*7919+int(tag[0])*104729)%100000000), device: "dev-" + tag + "-" + run}
}

// messages: anonymous browsing on one device, browsing on a second device
// that names the email (a second profile), login on the first device with the
// email (the two profiles merge), an order, a consent banner choice.
func (p person) messages(run string) []string {
	return []string{
		fmt.Sprintf(`{"type":"page","messageId":"pg-%s-%s","anonymousId":%q,"name":"Home","context":{"device":{"id":%q}}}`, p.user, run, p.anon, p.device),
		fmt.Sprintf(`{"type":"track","messageId":"tr-%s-%s","anonymousId":%q,"event":"Product Viewed","properties":{"product_id":"sku-9","category":"Boots"},"context":{"traits":{"email":%q}}}`,
			p.user, run, p.anon2, p.email),
		fmt.Sprintf(`{"type":"identify","messageId":"id-%s-%s","anonymousId":%q,"userId":%q,"traits":{"email":%q,"name":%q,"phone":%q}}`,
			p.user, run, p.anon, p.user, p.email, p.name, p.phone),
		fmt.Sprintf(`{"type":"track","messageId":"oc-%s-%s","userId":%q,"event":"Order Completed","properties":{"revenue":42,"shipping_name":%q}}`,
			p.user, run, p.user, p.name),
		fmt.Sprintf(`{"type":"track","messageId":"cp-%s-%s","userId":%q,"event":"Segment Consent Preference Updated","context":{"consent":{"categoryPreferences":{"Advertising":false,"Analytics":true}}}}`,
			p.user, run, p.user),
	}
}

func (p person) values() []string {
	return []string{p.user, p.anon, p.anon2, p.email, strings.ToLower(p.email), p.name, p.phone, p.device}
}

func (p person) identifiers() []trustloop.Identifier {
	return []trustloop.Identifier{{Type: "user_id", Value: p.user}, {Type: "anonymous_id", Value: p.anon},
		{Type: "anonymous_id", Value: p.anon2}, {Type: "email", Value: strings.ToLower(p.email)}, {Type: "phone", Value: p.phone},
		{Type: "device_id", Value: p.device}}
}

// secretsOf returns the byte strings a scan must not find: blind indexes (raw
// and hex) and wrapped subject keys.
type secretBytes struct {
	blinds  [][]byte
	wrapped [][]byte
	keyIDs  []int64
}

func keysOf(t *testing.T, keys *keyring.Keyring, find func([][]byte) (map[string]trustloop.SubjectKey, error), p person) secretBytes {
	t.Helper()
	var sb secretBytes
	for _, id := range p.identifiers() {
		b, err := keys.Blind(1, id.Type, id.Value)
		if err != nil {
			t.Fatal(err)
		}
		sb.blinds = append(sb.blinds, b)
	}
	found, err := find(sb.blinds)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range found {
		sb.wrapped = append(sb.wrapped, k.Wrapped)
		sb.keyIDs = append(sb.keyIDs, k.ID)
	}
	// user_id, anon and anon2 have keys of their own (they were each an
	// event's subject).
	if len(sb.wrapped) != 3 {
		t.Fatalf("the customer has %d subject keys, want 3", len(sb.wrapped))
	}
	return sb
}

// scanDir returns, for each needle found in a file under dir, the files that
// hold it. It fails if fewer than minFiles files were read.
func scanDir(t *testing.T, dir, when string, minFiles int, needles map[string][]byte) map[string][]string {
	t.Helper()
	found, files := storetest.FilesHolding(t, dir, needles)
	if files < minFiles {
		t.Fatalf("%s: only %d files scanned", when, files)
	}
	return found
}

// noneFound reports every needle a scan found.
func noneFound(t *testing.T, when string, found map[string][]string) {
	t.Helper()
	names := make([]string, 0, len(found))
	for what := range found {
		names = append(names, what)
	}
	sort.Strings(names)
	for _, what := range names {
		t.Errorf("%s: %s found in %v", when, what, found[what])
	}
}

// allFound is the positive control: the scan finds every blind index and every
// wrapped key of the customer before the erasure, so it can fail after it.
func allFound(t *testing.T, when string, found map[string][]string, sb secretBytes) {
	t.Helper()
	var want []string
	for i := range sb.blinds {
		want = append(want, fmt.Sprintf("blind index %d", i))
	}
	for i := range sb.wrapped {
		want = append(want, fmt.Sprintf("wrapped key %d", i))
	}
	for _, what := range want {
		if len(found[what]) == 0 {
			t.Errorf("%s: positive control: the scan does not find %s", when, what)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// noValues fails if a raw response body holds any of the customer's plaintext
// values.
func noValues(t *testing.T, what string, raw []byte, p person) {
	t.Helper()
	for _, v := range p.values() {
		if bytes.Contains(raw, []byte(v)) {
			t.Errorf("%s after the erasure holds %q: %s", what, v, raw)
		}
	}
}

func needlesOf(p person, sb secretBytes) map[string][]byte {
	n := map[string][]byte{}
	for _, v := range p.values() {
		n["value "+v] = []byte(v)
	}
	for i, b := range sb.blinds {
		n[fmt.Sprintf("blind index %d", i)] = b
		n[fmt.Sprintf("blind index %d (hex)", i)] = []byte(hex.EncodeToString(b))
	}
	for i, w := range sb.wrapped {
		n[fmt.Sprintf("wrapped key %d", i)] = w
	}
	return n
}

// waitRequest polls a request until it is completed.
func waitRequest(t *testing.T, s *server, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, r := api(t, s, "GET", "/v1/privacy-requests/"+id, nil)
		if code != 200 {
			t.Fatalf("GET request answered %d: %v", code, r)
		}
		if r["status"] == "completed" || r["status"] == "rejected" {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s still %v after 30 s:\n%s", id, r["status"], s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestErasureEndToEnd(t *testing.T) { erasureEndToEnd(t) }

func TestErasureEndToEndPostgres(t *testing.T) {
	erasureEndToEnd(t, "--database-url", pgtest.Schema(t, "PostgreSQL erasure end-to-end test"))
}

func erasureEndToEnd(t *testing.T, extra ...string) {
	dataDir := t.TempDir()
	args := append([]string{"--profiles"}, extra...)
	pg := len(extra) > 0
	s := start(t, dataDir, args...)
	run := randomHex(4)
	erin, other := newPerson(run, "a"), newPerson(run, "b")
	postBatchWith(t, s.url, append(erin.messages(run), other.messages(run)...))
	// A large group too (payloads in a segment file on SQLite).
	var bulk []string
	for i := 0; i < 300; i++ {
		bulk = append(bulk, fmt.Sprintf(`{"type":"track","messageId":"bulk-%s-%d","userId":%q,"event":"Product Viewed","properties":{"product_id":"p-%d","note":%q}}`,
			run, i, erin.user, i, strings.Repeat("x", 300)))
	}
	postBatchWith(t, s.url, bulk)
	code, prof := api(t, s, "GET", "/v1/profiles/lookup?purpose=essential&identifier=email:"+erin.email, nil)
	if code != 200 {
		t.Fatalf("lookup answered %d: %v", code, prof)
	}
	pid := prof["profile_id"].(string)
	if ids, _ := prof["identities"].([]any); len(ids) != 6 {
		t.Fatalf("the customer's profile has %d identities, want 6 (merged across devices): %v", len(ids), prof)
	}
	// Consent changed through the API (a receipt), and reads recorded.
	code, put := api(t, s, "PUT", "/v1/profiles/"+pid+"/consent", map[string]any{"purposes": map[string]bool{"marketing": true}, "method": "api"})
	if code != 200 {
		t.Fatalf("PUT consent answered %d: %v", code, put)
	}
	receipt, _ := put["receipt_id"].(string)
	for _, path := range []string{"/v1/profiles/" + pid + "?purpose=marketing", "/v1/profiles/" + pid + "/events?purpose=analytics"} {
		if code, v := api(t, s, "GET", path, nil); code != 200 {
			t.Fatalf("GET %s answered %d: %v", path, code, v)
		}
	}
	if code, v := api(t, s, "GET", "/v1/profiles/"+pid+"/data-uses", nil); code != 200 || len(v["data"].([]any)) == 0 {
		t.Fatalf("data uses: %d %v", code, v)
	}
	// The profiles merged away into pid (the customer browsed on two devices
	// before logging in).
	code, ms := api(t, s, "GET", "/v1/profiles/"+pid+"/merges?purpose=essential", nil)
	if code != 200 {
		t.Fatalf("GET merges answered %d: %v", code, ms)
	}
	var merged []string
	for _, m := range ms["data"].([]any) {
		m := m.(map[string]any)
		if from, _ := m["from"].(string); from != "" && from != pid && !slices.Contains(merged, from) {
			merged = append(merged, from)
		}
	}
	if len(merged) == 0 {
		t.Fatalf("the customer's profile has no merges: %v", ms)
	}
	// An audience both customers belong to (one order each).
	code, aud := api(t, s, "POST", "/v1/audiences", map[string]any{"name": "Buyers " + run, "rule": "computed.order_count >= 1"})
	if code != 201 {
		t.Fatalf("POST audience answered %d: %v", code, aud)
	}
	membersPath := fmt.Sprintf("/v1/audiences/%.0f/members?purpose=analytics&limit=500", aud["id"].(float64))
	code, mem := api(t, s, "GET", membersPath, nil)
	if ids := memberIDs(mem); code != 200 || len(ids) != 2 || !slices.Contains(ids, pid) {
		t.Fatalf("audience members before the erasure: %d %v, want both customers (the customer is %s)", code, mem, pid)
	}
	// The keys and blind indexes to look for, read from the stopped store.
	s.stop()
	var sb secretBytes
	if pg {
		db, keys := openPostgres(t, dataDir, extra[1])
		sb = keysOf(t, keys, func(b [][]byte) (map[string]trustloop.SubjectKey, error) {
			return db.FindSubjectKeys(context.Background(), 1, b)
		}, erin)
		db.Close()
	} else {
		db, keys := openStopped(t, dataDir)
		sb = keysOf(t, keys, func(b [][]byte) (map[string]trustloop.SubjectKey, error) {
			return db.FindSubjectKeys(context.Background(), 1, b)
		}, erin)
		db.Close()
	}
	// Positive controls: before the erasure the scans find the customer's
	// blind indexes and wrapped keys (plaintext values are encrypted at rest
	// and are not expected), so they can fail after it.
	needles := needlesOf(erin, sb)
	if pg {
		allFound(t, "before the erasure, PostgreSQL rows", scanRows(t, extra[1], needles), sb)
	} else {
		allFound(t, "before the erasure, stopped", scanDir(t, dataDir, "before the erasure, stopped", 3, needles), sb)
	}
	s = start(t, dataDir, args...)

	// Bad input changes nothing.
	for _, body := range []map[string]any{{"type": "forget", "identifier": "email:" + erin.email},
		{"type": "erasure", "identifier": "nonsense"}, {"type": "access", "identifier": "email:" + erin.email, "suppress": true}} {
		if code, v := api(t, s, "POST", "/v1/privacy-requests", body); code != 400 {
			t.Fatalf("POST %v answered %d, want 400: %v", body, code, v)
		}
	}
	code, req := api(t, s, "POST", "/v1/privacy-requests", map[string]any{"type": "erasure", "identifier": "email:" + erin.email})
	if code != 201 {
		t.Fatalf("POST erasure answered %d: %v", code, req)
	}
	done := waitRequest(t, s, req["request_id"].(string))
	if done["status"] != "completed" || done["receipt"] == "" {
		t.Fatalf("erasure ended %v", done)
	}
	result, _ := done["result"].(map[string]any)
	counts, _ := result["counts"].(map[string]any)
	if counts["events"].(float64) != 305 || counts["subject_keys"].(float64) != 3 || counts["identities"].(float64) != 6 {
		t.Fatalf("erasure counts %v, want 305 events, 3 keys, 6 identities", counts)
	}
	if code, v := api(t, s, "POST", "/v1/erasure-receipts/verify", map[string]any{"receipt": done["receipt"]}); code != 200 || v["valid"] != true {
		t.Fatalf("the erasure receipt does not verify: %d %v", code, v)
	}

	// (a) No API path shows anything of the customer.
	for _, id := range erin.identifiers() {
		if code, v := api(t, s, "GET", "/v1/profiles/lookup?purpose=essential&identifier="+url.QueryEscape(id.Type+":"+id.Value), nil); code != 404 {
			t.Fatalf("lookup of an erased %s answered %d: %v", id.Type, code, v)
		}
	}
	gone := []string{"/v1/profiles/" + pid + "?purpose=essential", "/v1/profiles/" + pid + "/events?purpose=essential",
		"/v1/profiles/" + pid + "/consent", "/v1/profiles/" + pid + "/consent/history", "/v1/profiles/" + pid + "/data-uses",
		"/v1/profiles/" + pid + "/merges?purpose=essential", "/v1/consent-receipts/" + receipt}
	for _, m := range merged {
		gone = append(gone, "/v1/profiles/"+m+"?purpose=essential")
	}
	for _, path := range gone {
		code, raw := apiRaw(t, s, "GET", path, nil)
		if code != 404 {
			t.Fatalf("GET %s after erasure answered %d, want 404: %s", path, code, raw)
		}
		noValues(t, "GET "+path, raw, erin)
	}
	code, raw := apiRaw(t, s, "GET", "/v1/profiles?purpose=essential&limit=500", nil)
	var list map[string]any
	json.Unmarshal(raw, &list)
	if data, _ := list["data"].([]any); code != 200 || len(data) != 1 {
		t.Fatalf("profiles after erasure: %d %s, want only the other customer", code, raw)
	}
	noValues(t, "GET /v1/profiles", raw, erin)
	// The audience lists only the other customer.
	code, raw = apiRaw(t, s, "GET", membersPath, nil)
	var mem2 map[string]any
	json.Unmarshal(raw, &mem2)
	if ids := memberIDs(mem2); code != 200 || len(ids) != 1 || slices.Contains(ids, pid) {
		t.Fatalf("audience members after the erasure: %d %s, want only the other customer", code, raw)
	}
	noValues(t, "GET "+membersPath, raw, erin)
	// The privacy requests name nothing of the customer.
	code, raw = apiRaw(t, s, "GET", "/v1/privacy-requests?limit=500", nil)
	if code != 200 || !bytes.Contains(raw, []byte(req["request_id"].(string))) {
		t.Fatalf("GET /v1/privacy-requests after the erasure: %d %s", code, raw)
	}
	noValues(t, "GET /v1/privacy-requests", raw, erin)
	code, raw = apiRaw(t, s, "GET", "/v1/privacy-requests/"+req["request_id"].(string), nil)
	if code != 200 {
		t.Fatalf("GET the erasure request answered %d: %s", code, raw)
	}
	noValues(t, "GET /v1/privacy-requests/{id}", raw, erin)
	// The other customer is untouched.
	code, o := api(t, s, "GET", "/v1/profiles/lookup?purpose=essential&identifier=email:"+other.email, nil)
	if code != 200 || len(o["identities"].([]any)) != 6 {
		t.Fatalf("the other customer after the erasure: %d %v", code, o)
	}
	// (b) No file holds their values, blind indexes or wrapped keys: while
	// running (database, WAL, shm, segments) and after a clean stop.
	if !pg {
		noneFound(t, "after the erasure, running", scanDir(t, dataDir, "after the erasure, running", 3, needles))
	}
	// An access request for the erased customer finds nothing, says so
	// without an error, and keeps no blind index of the identifier.
	code, acc := api(t, s, "POST", "/v1/privacy-requests", map[string]any{"type": "access", "identifier": "email:" + erin.email})
	if code != 201 {
		t.Fatalf("access request answered %d: %v", code, acc)
	}
	if r := waitRequest(t, s, acc["request_id"].(string)); r["result"].(map[string]any)["found"] != false {
		t.Fatalf("access after erasure found data: %v", r)
	}

	s.stop()
	// On PostgreSQL the data directory holds only the master key and the
	// credentials; (d) checks the database.
	minFiles := 3
	if pg {
		minFiles = 2
	}
	noneFound(t, "after the erasure, stopped", scanDir(t, dataDir, "after the erasure, stopped", minFiles, needles))

	// (c) The audit log still verifies.
	verify := []string{"audit", "verify", "--data-dir", dataDir}
	if pg {
		verify = []string{"audit", "verify", "--database-url", extra[1], "--master-key-file", filepath.Join(dataDir, "master.key")}
	}
	if out, err := runCmd(t, verify...); err != nil {
		t.Fatalf("audit verify after erasure: %v\n%s", err, out)
	}
	// (d) On PostgreSQL no row of any table names them.
	if pg {
		checkNoRows(t, extra[1], sb, needles)
	}
}

// memberIDs returns the profile ids of a page of audience members.
func memberIDs(page map[string]any) []string {
	var ids []string
	data, _ := page["data"].([]any)
	for _, m := range data {
		if m, ok := m.(map[string]any); ok {
			id, _ := m["profile_id"].(string)
			ids = append(ids, id)
		}
	}
	return ids
}

func openPostgres(t *testing.T, dataDir, dbURL string) (*postgres.DB, *keyring.Keyring) {
	t.Helper()
	db, err := postgres.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	master, _, err := keyring.LoadMasterKey("", filepath.Join(dataDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	keys := keyring.New(master, 10)
	keys.Load = db.FindWorkspace
	return db, keys
}

// checkNoRows looks through every table for the customer's blind indexes, key
// ids and wrapped keys, and through every column of every row for any needle.
func checkNoRows(t *testing.T, dbURL string, sb secretBytes, needles map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []struct {
		sql string
		arg any
	}{
		{`SELECT COUNT(*) FROM subject_keys WHERE blind = ANY($1)`, sb.blinds},
		{`SELECT COUNT(*) FROM subject_keys WHERE wrapped = ANY($1)`, sb.wrapped},
		{`SELECT COUNT(*) FROM subject_keys WHERE id = ANY($1)`, sb.keyIDs},
		{`SELECT COUNT(*) FROM events WHERE key_id = ANY($1)`, sb.keyIDs},
		{`SELECT COUNT(*) FROM timeline WHERE key_id = ANY($1)`, sb.keyIDs},
		{`SELECT COUNT(*) FROM identities WHERE blind = ANY($1)`, sb.blinds},
		{`SELECT COUNT(*) FROM profiles WHERE key_id = ANY($1)`, sb.keyIDs},
		{`SELECT COUNT(*) FROM identities WHERE key_id = ANY($1)`, sb.keyIDs},
		{`SELECT COUNT(*) FROM consent_records WHERE subject = ANY($1)`, sb.blinds},
		{`SELECT COUNT(*) FROM consent_receipts WHERE subject = ANY($1)`, sb.blinds},
		{`SELECT COUNT(*) FROM consent_subjects WHERE subject = ANY($1)`, sb.blinds},
		{`SELECT COUNT(*) FROM privacy_requests WHERE subject = ANY($1)`, sb.blinds},
		{`SELECT COUNT(*) FROM merges m WHERE NOT EXISTS (SELECT 1 FROM profiles p WHERE p.id = m.into_profile)`, nil},
	} {
		var n int64
		var err error
		if q.arg == nil {
			err = conn.QueryRow(ctx, q.sql).Scan(&n)
		} else {
			err = conn.QueryRow(ctx, q.sql, q.arg).Scan(&n)
		}
		if err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
		if n != 0 {
			t.Errorf("%s: %d rows after the erasure", q.sql, n)
		}
	}
	noneFound(t, "after the erasure, PostgreSQL rows", scanRows(t, dbURL, needles))
}

// scanRows returns, for each needle held by some value of some column of some
// table of the schema, the columns (table.column) that hold it. bytea columns
// are searched as they are; every other column as its text form in UTF-8
// (text, json, jsonb, arrays; numbers and times hold no needle but are
// searched too, so that no column is skipped by type).
func scanRows(t *testing.T, dbURL string, needles map[string][]byte) map[string][]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	names := make([]string, 0, len(needles))
	for what := range needles {
		names = append(names, what)
	}
	sort.Strings(names)
	bs := make([][]byte, len(names))
	for i, what := range names {
		bs[i] = needles[what]
	}
	rows, err := conn.Query(ctx, `SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
		WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
		ORDER BY c.table_name, c.ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	type col struct{ table, column, typ string }
	var cols []col
	for rows.Next() {
		var c col
		if err := rows.Scan(&c.table, &c.column, &c.typ); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	tables := map[string]bool{}
	for _, c := range cols {
		tables[c.table] = true
	}
	for _, want := range []string{"events", "identities", "profiles", "subject_keys", "privacy_requests", "consent_records"} {
		if !tables[want] {
			t.Fatalf("scanRows: no table %s in the schema (%d columns found)", want, len(cols))
		}
	}
	found := map[string][]string{}
	for _, c := range cols {
		expr := pgx.Identifier{c.column}.Sanitize()
		if c.typ != "bytea" {
			expr = fmt.Sprintf(`convert_to(%s::text, 'UTF8')`, expr)
		}
		q := fmt.Sprintf(`SELECT u.i FROM unnest($1::bytea[]) WITH ORDINALITY AS u(n, i)
			WHERE EXISTS (SELECT 1 FROM %s WHERE position(u.n in %s) > 0)`, pgx.Identifier{c.table}.Sanitize(), expr)
		rs, err := conn.Query(ctx, q, bs)
		if err != nil {
			t.Fatalf("scan %s.%s (%s): %v", c.table, c.column, c.typ, err)
		}
		for rs.Next() {
			var i int64
			if err := rs.Scan(&i); err != nil {
				t.Fatal(err)
			}
			what := names[i-1]
			found[what] = append(found[what], c.table+"."+c.column)
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			t.Fatalf("scan %s.%s (%s): %v", c.table, c.column, c.typ, err)
		}
	}
	return found
}
