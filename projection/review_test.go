package projection_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/projection"
)

// A split answers with, and stores memberships of, the rebuilt profiles, not
// what memory held before it.
func TestSplitAnswersRebuiltProfiles(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	ctx := context.Background()
	at := e.clock.Now()
	pro := &trustloop.Audience{WorkspaceID: e.ws, Name: "pro", Rule: `traits.plan == "pro"`}
	if err := svc.SaveAudience(ctx, pro); err != nil {
		t.Fatal(err)
	}
	e.commit(svc, identify("a1", "", "phone", at, obj{"email": "sam@example.com", "plan": "pro"}))
	e.commit(svc, identify("b1", "", "laptop", at.Add(time.Second), obj{"plan": "free"}))
	e.commit(svc, identify("b2", "", "laptop", at.Add(2*time.Second), obj{"email": "sam@example.com"}))
	p := e.lookup(svc, trustloop.IDAnonymousID, "phone")
	id, _ := projection.ParseID(p.ProfileID)
	ms, err := svc.Merges(ctx, e.ws, id)
	if err != nil || len(ms) != 1 {
		t.Fatal(ms, err)
	}
	mid, _ := projection.ParseID(ms[0].MergeID)
	into, from, err := svc.Split(ctx, e.ws, id, mid)
	if err != nil {
		t.Fatal(err)
	}
	if into.Traits["plan"] != "pro" || from.ProfileID != ms[0].From || from.Traits["plan"] != "free" {
		t.Fatalf("split answered into=%s plan=%v, from=%s (want %s) plan=%v", into.ProfileID, into.Traits["plan"], from.ProfileID, ms[0].From, from.Traits["plan"])
	}
	stored, _ := e.db.ProfileAudiences(ctx, e.ws, id)
	if len(stored) != 1 || stored[0] != pro.ID {
		t.Fatalf("stored memberships of the survivor = %v, want [%d]", stored, pro.ID)
	}
	fromID, _ := projection.ParseID(from.ProfileID)
	if got, _ := e.db.ProfileAudiences(ctx, e.ws, fromID); len(got) != 0 {
		t.Fatalf("stored memberships of the split-off profile = %v, want none", got)
	}
}

// A flush that lost the race to a commit (its row write skipped by the guard)
// does not write its older memberships either.
func TestFlushLosingToCommitKeepsMemberships(t *testing.T) {
	e, svc, pro := proCustomer(t)
	ctx := context.Background()
	at := e.clock.Now()
	e.commit(svc, identify("m2", "u1", "", at.Add(time.Second), obj{"plan": "pro"})) // P dirty, in pro (memory)
	e.commit(svc, identify("m3", "", "a2", at.Add(2*time.Second), obj{"plan": "free"}))
	flushed := make(chan error, 1)
	_, err := e.commitWith(svc, func() error {
		go func() { _, err := svc.Flush(ctx, true); flushed <- err }()
		time.Sleep(200 * time.Millisecond)
		return nil
	}, track("m4", "u1", "a2", at.Add(3*time.Second), "Clicked", obj{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	p := e.lookup(svc, trustloop.IDUserID, "u1")
	id, _ := projection.ParseID(p.ProfileID)
	stored, _ := e.db.ProfileAudiences(ctx, e.ws, id)
	inPro := len(stored) == 1 && stored[0] == pro.ID
	if (p.Traits["plan"] == "pro") != inPro {
		t.Fatalf("live plan=%v but stored memberships=%v", p.Traits["plan"], stored)
	}
	list, _, err := svc.List(ctx, e.ws, pro.ID, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range list {
		if q.Traits["plan"] != "pro" {
			t.Fatalf("List(pro) has %s with plan %v", q.ProfileID, q.Traits["plan"])
		}
	}
}

// A profile read back from the store (after a restart, or evicted from memory)
// that leaves an audience must lose its stored membership: flushes write
// memberships only when they change, and the state read back does not carry the
// stored ones.
func TestLeavingAnAudienceAfterRestart(t *testing.T) {
	e, svc, _ := proCustomer(t)
	ctx := context.Background()
	at := e.clock.Now()
	e.commit(svc, identify("m2", "u1", "", at.Add(time.Second), obj{"plan": "pro"}))
	if _, err := svc.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}
	id, _ := projection.ParseID(e.lookup(svc, trustloop.IDUserID, "u1").ProfileID)
	if stored, _ := e.db.ProfileAudiences(ctx, e.ws, id); len(stored) != 1 {
		t.Fatalf("memberships after joining = %v, want [pro]", stored)
	}
	e.reopen()
	svc = e.service()
	e.commit(svc, identify("m3", "u1", "", at.Add(2*time.Second), obj{"plan": "free"}))
	if _, err := svc.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}
	if stored, _ := e.db.ProfileAudiences(ctx, e.ws, id); len(stored) != 0 {
		t.Fatalf("memberships after leaving = %v, want none", stored)
	}
	// And a flush without change writes none (nor loses them).
	e.commit(svc, identify("m4", "u1", "", at.Add(3*time.Second), obj{"plan": "pro"}))
	e.commit(svc, track("m5", "u1", "", at.Add(4*time.Second), "Clicked", obj{}))
	if _, err := svc.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}
	if stored, _ := e.db.ProfileAudiences(ctx, e.ws, id); len(stored) != 1 {
		t.Fatalf("memberships after joining again = %v, want [pro]", stored)
	}
}

// proCustomer is a store with an audience "pro" and a customer u1 on the free
// plan (event m1, at the clock's time).
func proCustomer(t *testing.T) (*env, *projection.Service, *trustloop.Audience) {
	e := newEnv(t)
	svc := e.service()
	pro := &trustloop.Audience{WorkspaceID: e.ws, Name: "pro", Rule: `traits.plan == "pro"`}
	if err := svc.SaveAudience(context.Background(), pro); err != nil {
		t.Fatal(err)
	}
	e.commit(svc, identify("m1", "u1", "", e.clock.Now(), obj{"plan": "free"}))
	return e, svc, pro
}

// blockingStore holds the first WriteProjection until released, then fails it;
// later ones go through.
type blockingStore struct {
	projection.Store
	entered, release chan struct{}
	done             bool
}

func (b *blockingStore) WriteProjection(ctx context.Context, c *trustloop.ProjectionChanges) error {
	if b.done {
		return b.Store.WriteProjection(ctx, c)
	}
	b.done = true
	close(b.entered)
	<-b.release
	return errWrite
}

// A flush that takes a profile's changed memberships and fails after a group
// copied the profile (without them): the group's state, installed after, must
// still have them to write.
func TestFailedFlushKeepsMembershipsAcrossAGroup(t *testing.T) {
	e := newEnv(t)
	bs := &blockingStore{Store: e.db, entered: make(chan struct{}), release: make(chan struct{})}
	svc := e.serviceOver(bs)
	ctx := context.Background()
	at := e.clock.Now()
	pro := &trustloop.Audience{WorkspaceID: e.ws, Name: "pro", Rule: `traits.plan == "pro"`}
	if err := svc.SaveAudience(ctx, pro); err != nil {
		t.Fatal(err)
	}
	e.commit(svc, identify("m1", "u1", "", at, obj{"plan": "free"}))
	e.commit(svc, identify("m2", "u1", "", at.Add(time.Second), obj{"plan": "pro"})) // joins pro, in memory
	flushed := make(chan error, 1)
	go func() { _, err := svc.Flush(ctx, true); flushed <- err }()
	<-bs.entered // the flush holds u1's memberships
	if _, err := e.commitWith(svc, func() error {
		close(bs.release) // the group has its copy of u1: now the flush fails
		if err := <-flushed; !errors.Is(err, errWrite) {
			t.Errorf("Flush = %v, want the injected failure", err)
		}
		return nil
	}, track("m3", "u1", "", at.Add(2*time.Second), "Clicked", obj{})); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}
	id, _ := projection.ParseID(e.lookup(svc, trustloop.IDUserID, "u1").ProfileID)
	if stored, _ := e.db.ProfileAudiences(ctx, e.ws, id); len(stored) != 1 || stored[0] != pro.ID {
		t.Fatalf("stored memberships = %v, want [pro]", stored)
	}
}

// Flushes, audience changes and API reads run while groups commit (as they do
// in a server): meant for the race detector (`go test -race`, run by CI), and
// every event is counted once at the end.
func TestFlushesAndReadsDuringGroups(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	ctx := context.Background()
	at := e.clock.Now()
	const users, groups = 20, 60
	var first []trustloop.Message
	for u := range users {
		first = append(first, identify(fmt.Sprintf("i%d", u), fmt.Sprintf("u%d", u), "", at, obj{"plan": "free"}))
	}
	e.commit(svc, first...)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	background := func(f func(i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := f(i); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	background(func(int) error { _, err := svc.Flush(ctx, true); return err })
	background(func(i int) error {
		_, err := svc.Lookup(ctx, e.ws, trustloop.Identifier{Type: trustloop.IDUserID, Value: fmt.Sprintf("u%d", i%users)})
		return err
	})
	background(func(i int) error {
		time.Sleep(5 * time.Millisecond)
		a := &trustloop.Audience{WorkspaceID: e.ws, Name: fmt.Sprintf("a%d", i), Rule: fmt.Sprintf(`computed.events > %d`, i%4)}
		return svc.SaveAudience(ctx, a)
	})
	for g := range groups {
		var msgs []trustloop.Message
		for u := range users {
			msgs = append(msgs, track(fmt.Sprintf("g%d-%d", g, u), fmt.Sprintf("u%d", u), "", at.Add(time.Duration(g+1)*time.Millisecond),
				"Clicked", obj{}))
		}
		e.commit(svc, msgs...)
	}
	close(stop)
	wg.Wait()
	if _, err := svc.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	fresh := e.service()
	for u := range users {
		e.checkCounts(e.lookup(fresh, trustloop.IDUserID, fmt.Sprintf("u%d", u)), groups+1, 0)
	}
}

// Subjects are cached per profile (the recommender asks for them with every
// answer), so every change to a profile's identities must reach them: an
// attached user id, a merge, a split.
func TestSubjectsFollowIdentities(t *testing.T) {
	e := newEnv(t)
	svc := e.service()
	ctx := context.Background()
	at := e.clock.Now()
	subjects := func(typ, value string, want int) int64 {
		t.Helper()
		p := e.lookup(svc, typ, value)
		id, _ := projection.ParseID(p.ProfileID)
		for range 2 { // the second answer comes from the cache
			got, subs, err := svc.Subjects(ctx, e.ws, id)
			if err != nil || got != id || len(subs) != want {
				t.Fatalf("Subjects(%s) = %d, %d subjects, %v; want %d, %d", value, got, len(subs), err, id, want)
			}
		}
		return id
	}
	e.commit(svc, identify("a1", "", "phone", at, obj{"email": "sam@example.com"}))
	phone := subjects(trustloop.IDAnonymousID, "phone", 1)
	e.commit(svc, identify("a2", "u-9", "phone", at.Add(time.Second), nil)) // attaches u-9
	subjects(trustloop.IDAnonymousID, "phone", 2)
	e.commit(svc, identify("b1", "", "laptop", at.Add(2*time.Second), nil))
	laptop := subjects(trustloop.IDAnonymousID, "laptop", 1)
	e.commit(svc, identify("b2", "", "laptop", at.Add(3*time.Second), obj{"email": "sam@example.com"})) // merges
	if got, subs, err := svc.Subjects(ctx, e.ws, laptop); err != nil || got != phone || len(subs) != 3 {
		t.Fatalf("Subjects of the merged laptop profile = %d, %d subjects, %v; want %d, 3", got, len(subs), err, phone)
	}
	subjects(trustloop.IDAnonymousID, "phone", 3)
	ms, err := svc.Merges(ctx, e.ws, phone)
	if err != nil || len(ms) != 1 {
		t.Fatal(ms, err)
	}
	mid, _ := projection.ParseID(ms[0].MergeID)
	if _, _, err := svc.Split(ctx, e.ws, phone, mid); err != nil {
		t.Fatal(err)
	}
	subjects(trustloop.IDAnonymousID, "phone", 2)
	subjects(trustloop.IDAnonymousID, "laptop", 1)
}
