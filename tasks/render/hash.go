package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/record"
)

// configHash is a hash of what the service runs with: a container whose
// label holds another runs another configuration. Secret values enter as
// keyed digests (Options.SecretKey).
func (r *renderer) configHash(v *svcView, role string) (string, error) {
	var secrets []string
	for _, sv := range v.secrets {
		d := sv.Key
		if r.opts.SecretKey != nil {
			d += "=" + record.Digest(r.opts.SecretKey, sv.Value)
		}
		secrets = append(secrets, d)
	}
	// Fields added since the first are left out when empty, so that a
	// service that does not use them keeps its hash.
	sum, err := json.Marshal(struct {
		Image, Network, Role string
		Build                *buildView
		Ports, Healthcheck   []string
		Volumes              []catalog.Volume
		Env                  []envVar
		Secrets              []string
		Deploy               *swarmDeploy      `json:",omitempty"`
		HealthcheckOptions   map[string]any    `json:",omitempty"`
		Labels               map[string]string `json:",omitempty"`
		Compose              map[string]any    `json:",omitempty"`
		Settings             map[string]any    `json:",omitempty"`
	}{v.Image, r.cat.Project.Network, role, v.Build, v.Ports, v.Healthcheck, v.Volumes, v.Env, secrets,
		r.swarmDeploy(v), v.svc.HealthcheckOptions, v.svc.Labels, v.compose, v.Settings.Values()})
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(sum)
	return hex.EncodeToString(h[:]), nil
}

// ConfigHashes returns the config hash (labels.ConfigHash) Render gives
// each service of the environment, by name, without rendering files.
func ConfigHashes(cat *catalog.Catalog, env *catalog.Environment, opts Options) (map[string]string, error) {
	r := &renderer{cat: cat, env: env, opts: opts, byName: map[string]*svcView{}}
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("render %s: %w", env.Name, err)
	}
	out := map[string]string{}
	for _, s := range cat.All() {
		v, err := r.service(s)
		if err != nil {
			return nil, err
		}
		for _, l := range v.Labels {
			if l.Key == labels.ConfigHash {
				out[s.Name] = l.Value
			}
		}
	}
	return out, nil
}
