package projection

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/identity"
	"github.com/trustloop/trustloop/profile"
)

// SettingName is the workspace setting holding the profile configuration.
const SettingName = "profiles"

// Settings are a workspace's profile configuration: how identities are resolved
// (blocked values, limits, priority, custom identifier types) and which computed
// traits are kept. Changes apply to events collected from then on; profiles built
// before keep what they had (a rebuild from the log would apply them to history).
type Settings struct {
	Version  int64           `json:"version"`
	Identity identity.Config `json:"identity"`
	Computed profile.Config  `json:"computed"`
}

// wsConfig is a workspace's compiled settings.
type wsConfig struct {
	rules   *identity.Rules
	profile profile.Config
}

// config returns the workspace's compiled settings: stored ones, else the
// service's defaults.
func (s *Service) config(ctx context.Context, ws int64) (*wsConfig, error) {
	s.mu.Lock()
	c := s.configs[ws]
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	st, err := s.Settings(ctx, ws)
	if err != nil {
		return nil, err
	}
	c = &wsConfig{rules: s.rules, profile: s.profile}
	if st.Version > 0 {
		if c.rules, err = identity.Compile(st.Identity); err != nil {
			return nil, fmt.Errorf("projection: stored identity settings of workspace %d: %w", ws, err)
		}
		c.profile = st.Computed
	}
	s.mu.Lock()
	s.configs[ws] = c
	s.mu.Unlock()
	return c, nil
}

// Settings returns a workspace's settings (the defaults, version 0, if never set).
func (s *Service) Settings(ctx context.Context, ws int64) (*Settings, error) {
	v, version, err := s.store.FindSetting(ctx, ws, SettingName)
	if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
		return &Settings{Identity: s.identityDefaults, Computed: s.profile}, nil
	} else if err != nil {
		return nil, err
	}
	st := &Settings{}
	if err := json.Unmarshal(v, st); err != nil {
		return nil, fmt.Errorf("projection: stored settings of workspace %d: %w", ws, err)
	}
	st.Version = version
	return st, nil
}

// SaveSettings validates and stores a workspace's settings; st.Version must be the
// version read (ECONFLICT otherwise). EINVALID names what is wrong.
func (s *Service) SaveSettings(ctx context.Context, ws int64, st *Settings) error {
	if _, err := identity.Compile(st.Identity); err != nil {
		return err
	}
	if err := identity.CheckBounds(st.Identity); err != nil {
		return err
	}
	if err := st.Computed.Validate(); err != nil {
		return err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	if err := enc.Encode(struct {
		Identity identity.Config `json:"identity"`
		Computed profile.Config  `json:"computed"`
	}{st.Identity, st.Computed}); err != nil {
		return err
	}
	version, err := s.store.PutSetting(ctx, ws, SettingName, b.Bytes(), st.Version)
	if err != nil {
		return err
	}
	st.Version = version
	s.mu.Lock()
	delete(s.configs, ws)
	s.mu.Unlock()
	return nil
}
