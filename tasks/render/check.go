package render

import (
	"fmt"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// Check refuses what Render would refuse for env (options, secrets no .env
// can carry, a name the layout takes), without rendering: promote
// calls it before it connects to a host.
func Check(cat *catalog.Catalog, env *catalog.Environment, opts Options) error {
	if cat == nil || env == nil {
		return fmt.Errorf("render: no catalog or environment")
	}
	r := &renderer{cat: cat, env: env, opts: opts, byName: map[string]*svcView{}}
	if err := r.check(); err != nil {
		return fmt.Errorf("render %s: %w", env.Name, err)
	}
	return nil
}

// check refuses what the templates could not carry of this render's own
// inputs: the options, and the secrets' values as resolved for env. The
// catalog's names, settings and swarm rules are catalog.Load's to refuse
// (its one validator, with file:line); Render trusts a loaded catalog.
func (r *renderer) check() error {
	if r.opts.Release != "" && !releaseID.MatchString(r.opts.Release) {
		return fmt.Errorf("invalid release id %q (letters, digits, '.', '_', ':' and '-', at most 128)", r.opts.Release)
	}
	if err := r.checkSecrets(); err != nil {
		return err
	}
	names := map[string]bool{}
	secretVars := map[string]string{}
	for _, s := range r.cat.All() {
		names[s.Name] = true
		if !s.Infra && s.Name == InfraDir {
			return fmt.Errorf("service %s: the name is taken by the %s/ folder of the deployment; rename the service", s.Name, InfraDir)
		}
		for k, v := range s.Secrets {
			if _, err := envQuote(v); err != nil {
				return fmt.Errorf("service %s: secret %s: %w, which no .env file can carry; change the value", s.Name, k, err)
			}
			sv := SecretVar(s.Name, k)
			if other, dup := secretVars[sv]; dup {
				return fmt.Errorf("service %s: secret %s and %s both map to the .env variable %s; rename one", s.Name, k, other, sv)
			}
			secretVars[sv] = s.Name + " " + k
		}
	}
	for name := range r.opts.Images {
		if !names[name] {
			return fmt.Errorf("an image is pinned for %q, which the catalog does not declare", name)
		}
	}
	r.header = []string{
		fmt.Sprintf("Rendered by maestro-deploy for project %q, environment %q%s.", r.cat.Project.Name, r.env.Name, r.releaseNote()),
		"Do not edit: `mage render` rewrites this file, and stops at hand edits",
		"unless told to overwrite them (DEPLOY_OVERWRITE=1), keeping a backup in " + BackupDir + "/.",
	}
	if r.opts.Release != "" {
		// A release folder on a host is what promote shipped: nothing
		// renders it again there, and a rollback refuses a copy that
		// differs from the shipping machine's record.
		r.header = append(r.header[:1],
			"Do not edit: this is the release as `mage promote` shipped it; `mage rollback`",
			"refuses a release whose files differ from the record kept where it was shipped from.")
	}
	return nil
}

// checkSecrets refuses secrets that are not this environment's: values
// resolved for another environment, the catalog's dev defaults on a remote
// environment (the catalog is committed, so a literal in it is no secret
// and must never guard a host others reach), and a declared secret with no
// value, which would leave the container without it. A catalog built in
// code that sets Secrets alone, without SecretNames, is taken as it is.
func (r *renderer) checkSecrets() error {
	declared := false
	for _, s := range r.cat.All() {
		declared = declared || len(s.SecretNames) > 0
	}
	if !declared {
		return nil
	}
	const how = "resolve the secrets for it first (secrets.Resolve)"
	switch got := r.cat.SecretsEnv; {
	case got != "" && got != r.env.Name:
		return fmt.Errorf("the secrets were resolved for environment %s, not for %s: %s", got, r.env.Name, how)
	case got == "" && r.env.Remote():
		return fmt.Errorf("environment %s is remote and its secrets are not resolved: the catalog's dev defaults are never used for a remote environment; %s", r.env.Name, how)
	}
	for _, s := range r.cat.All() {
		for _, n := range s.SecretNames {
			if _, ok := s.Secrets[n]; !ok {
				return fmt.Errorf("service %s: secret %s has no value: %s", s.Name, n, how)
			}
		}
	}
	return nil
}
