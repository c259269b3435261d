package http

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/consent"
	"github.com/trustloop/trustloop/projection"
	"github.com/trustloop/trustloop/recommend"
)

// Recommendations (API.md): personalized from the subject's own consented
// history when personalization is allowed for them now, else the popular
// items of analytics-allowed data, with the reason. A personalized answer is
// a recorded data use; a fallback uses none of the subject's data.

var recommendPaths = []string{"/v1/profiles/{id}/recommendations", "/v1/items/{id}/similar", "/v1/recommender/model"}

func (s *Server) recommendRoutes(mux *http.ServeMux) {
	if s.Recommender == nil || s.Profiles == nil {
		return
	}
	mux.Handle("GET /v1/profiles/{id}/recommendations", s.route("/v1/profiles/{id}/recommendations", s.authed(s.recommendations)))
	mux.Handle("GET /v1/items/{id}/similar", s.route("/v1/items/{id}/similar", s.authed(s.similarItems)))
	mux.Handle("GET /v1/recommender/model", s.route("/v1/recommender/model", s.authed(s.recommenderModel)))
}

type modelView struct {
	recommend.Stats
	// Digest (with ?digest=true) is the SHA-256 of the model's canonical
	// form: equal digests are the same model (after a withdrawal, equal to a
	// rebuild from the log).
	Digest string `json:"digest,omitempty"`
	// Pending counts subjects still to be read back after consent changes.
	Pending    int                `json:"pending"`
	Similarity string             `json:"similarity"`
	HalfLifeH  float64            `json:"half_life_hours"`
	MaxItems   int                `json:"max_items"`
	Exclude    string             `json:"exclude"`
	Weights    map[string]float64 `json:"weights"`
}

// recommenderModel describes the workspace's model (admin): its size, its
// configuration and a digest of its whole state. Nothing in it is personal.
func (s *Server) recommenderModel(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requireAdmin(k); err != nil {
		return err
	}
	c := s.Recommender.Config()
	v := modelView{Stats: s.Recommender.Stats(k.WorkspaceID), Pending: s.Recommender.Pending(k.WorkspaceID),
		Similarity: string(c.Similarity), HalfLifeH: c.HalfLife.Hours(), MaxItems: c.MaxItems, Exclude: string(c.Exclude), Weights: c.Weights}
	switch r.URL.Query().Get("digest") {
	case "true":
		// The whole state is encoded: only when asked (it holds the model's
		// read lock for as long, which the collector's writer waits on).
		sum := sha256.Sum256(s.Recommender.Encode(k.WorkspaceID))
		v.Digest = hex.EncodeToString(sum[:])
	case "", "false":
	default:
		return trustloop.Errorf(trustloop.EINVALID, "digest must be true or false.").
			WithHint("Leave it out, or pass digest=true for the model's SHA-256.")
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

type recommendationsView struct {
	ProfileID    string          `json:"profile_id"`
	Personalized bool            `json:"personalized"`
	Reason       string          `json:"reason,omitempty"`
	Items        []recommend.Rec `json:"items"`
}

// Reasons an answer is not personalized.
const (
	reasonNotAllowed = "not_allowed"
	reasonNoHistory  = "no_history"
)

func (s *Server) recommendations(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	id, err := projection.ParseID(r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := onlyPersonalization(r, "Recommendations are"); err != nil {
		return err
	}
	n, err := limit(r, 10, 100, false)
	if err != nil {
		return err
	}
	pp := recommend.Personalization
	c, err := s.checkReadPurpose(r.Context(), pp, k)
	if err != nil {
		return err
	}
	// Only whose data it is: nothing of the profile is shown.
	pid, subjects, err := s.Profiles.Subjects(r.Context(), k.WorkspaceID, id)
	if err != nil {
		return err
	}
	a, err := s.decideRead(r.Context(), k.WorkspaceID, pp, c, subjects)
	if err != nil {
		return err
	}
	v, used := s.recommendFor(k.WorkspaceID, pid, subjects, c, a, n)
	if v.Personalized {
		if err := s.recordUses(r.Context(), k, pp, routeOf(r), []use{{profile: v.ProfileID, categories: used}}); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, &v)
	return nil
}

// recommendFor makes a profile's recommendations under a, the decision of a
// personalization read (the API and the console's customer page share it):
// personalized from the subject's own history when a allows it, else the
// popular items with the reason. A personalized answer also returns the
// categories it used, which the caller records before showing it; a fallback
// uses none of the subject's data.
func (s *Server) recommendFor(ws, pid int64, subjects [][]byte, c *consent.Compiled, a *access, n int) (recommendationsView, []string) {
	v := recommendationsView{ProfileID: projection.FormatID(pid)}
	if a.allowed {
		recs, history := s.Recommender.Recommend(ws, subjects, n)
		// History that leads to nothing new (everything similar bought) is
		// no history for this answer: nothing of theirs is shown.
		if history && len(recs) > 0 {
			v.Personalized, v.Items = true, recs
			return v, s.modelCategories(c, a)
		}
		v.Reason = reasonNoHistory
	} else {
		v.Reason = reasonNotAllowed
	}
	v.Items = []recommend.Rec{}
	for _, it := range s.Recommender.Popular(ws, n) {
		v.Items = append(v.Items, recommend.Rec{ItemID: it.ItemID, Score: it.Score, Because: []recommend.Because{}})
	}
	return v, nil
}

// modelCategories are the data categories a personalized answer used: those
// of the weighted events that personalization may use.
func (s *Server) modelCategories(c *consent.Compiled, a *access) []string {
	var cats consent.Cats
	for name := range s.Recommender.Config().Weights {
		cats |= consent.EventCategories(&trustloop.Message{Type: trustloop.EventTrack, Event: name})
	}
	if c != nil {
		cats &= a.visible
	}
	out := cats.Names()
	slices.Sort(out)
	return out
}

type similarView struct {
	ItemID string             `json:"item_id"`
	Items  []recommend.Scored `json:"items"`
}

// similarItems answers which items the customers who allow personalization
// met together with this one: aggregate data drawn from personalization, so
// the key must hold that purpose, and pairs fewer than MinSupport customers
// met are left out.
func (s *Server) similarItems(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if !slices.Contains(k.Purposes, recommend.Personalization) {
		return trustloop.Errorf(trustloop.EFORBIDDEN, "This API key may not read for purpose personalization, which similar items are drawn from.").
			WithHint("Use a key created for personalization.")
	}
	if err := onlyPersonalization(r, "Similar items are"); err != nil {
		return err
	}
	item := r.PathValue("id")
	if strings.TrimSpace(item) == "" || len(item) > recommend.MaxItemID {
		return trustloop.Errorf(trustloop.EINVALID, "The item id must be 1 to %d bytes (UTF-8).", recommend.MaxItemID).
			WithHint("Use the product_id (or sku) the events carried, percent-encoded in the path.")
	}
	n, err := limit(r, 10, 100, false)
	if err != nil {
		return err
	}
	items, err := s.Recommender.Similar(k.WorkspaceID, item, n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, similarView{ItemID: item, Items: items})
	return nil
}

// onlyPersonalization refuses a purpose other than personalization, the one
// the recommender's answers are read for; a caller may say so or leave it out.
func onlyPersonalization(r *http.Request, what string) error {
	if p := r.URL.Query().Get("purpose"); p != "" && p != recommend.Personalization {
		return trustloop.Errorf(trustloop.EINVALID, "%s read for purpose personalization, not %q.", what, p).
			WithHint("Leave purpose out or set purpose=personalization.")
	}
	return nil
}
