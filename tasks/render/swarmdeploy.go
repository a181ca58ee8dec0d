package render

// swarmDeploy is what of a stack file's deploy section enters a service's
// config hash: swarm's runtime replaces exactly the services whose hash
// changed, so a new replica count or placement must change it. It is nil
// (left out of the hash) for compose environments and for swarm services
// with one replica and no placement, whose hashes are thus what they were
// before these settings entered the hash.
type swarmDeploy struct {
	Replicas   int `json:",omitempty"`
	MaxPerNode int `json:",omitempty"`
}

func (r *renderer) swarmDeploy(v *svcView) *swarmDeploy {
	if !r.env.Kind().Stack || v.Replicas <= 1 && v.MaxPerNode == 0 {
		return nil
	}
	return &swarmDeploy{Replicas: v.Replicas, MaxPerNode: v.MaxPerNode}
}
