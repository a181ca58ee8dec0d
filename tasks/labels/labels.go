// Package labels names every Docker label the runner sets or reads, once:
// compose's and swarm's own, by which a stack's containers are found (never
// by name: compose v1 names them project_service_1, v2 project-service-1),
// and the runner's, by which it recognises its images, containers and
// helpers.
package labels

// Prefixes of the label keys above: the runner's own (Prefix), those of
// its helpers (HelperPrefix), and compose's and swarm's (DockerPrefix). A
// catalog may set none of them: they are how containers are found.
const (
	Prefix       = "io.maestro."
	HelperPrefix = "maestro-deploy."
	DockerPrefix = "com.docker."
)

// Set by compose on the containers and networks of a project.
const (
	ComposeProject = "com.docker.compose.project"
	ComposeService = "com.docker.compose.service"
	// ComposeOneOff is "True" on the containers of `compose run`, which
	// are no service; compose v1 filters on "False".
	ComposeOneOff  = "com.docker.compose.oneoff"
	ComposeNetwork = "com.docker.compose.network"
)

// Set by swarm on a stack's services, networks and task containers.
const (
	StackNamespace = "com.docker.stack.namespace"
	SwarmService   = "com.docker.swarm.service.name"
)

// Set by render on every service of a rendered compose or stack file.
const (
	Service     = "io.maestro.service"     // the catalog service name
	Role        = "io.maestro.role"        // RoleService or RoleInfrastructure
	Environment = "io.maestro.environment" // the catalog environment
	// ConfigHash is a hash of the service's effective configuration:
	// image, environment (secrets by keyed digest), ports, healthcheck,
	// volumes and command. A container whose label differs from the
	// rendered one runs another configuration and is replaced.
	ConfigHash = "io.maestro.config-hash"
)

// Values of Role.
const (
	RoleService        = "service"
	RoleInfrastructure = "infrastructure"
)

// Set by build on the images it makes.
const (
	// ContextHash is the content hash of the build context an image was
	// built from: an image carrying the hash of the current context is
	// reused instead of built.
	ContextHash = "io.maestro.context-hash"
	Project     = "io.maestro.project"
)

// The runner's helper containers and images.
const (
	// Probe marks testAll's probe containers (one-shot and server); its
	// value is the project.
	Probe      = "maestro-deploy.probe"
	ProbeMode  = "maestro-deploy.probe.mode"  // "serve" for the reused server
	ProbeImage = "maestro-deploy.probe.image" // the image reference a server runs
	ProbeToken = "maestro-deploy.probe.token" // what a server expects in requests
	// Tool marks the release tool's images and containers on deployment
	// hosts; ToolDir is the folder an agent container serves.
	Tool    = "maestro-deploy.release-tool"
	ToolDir = "maestro-deploy.release-tool.dir"
	// ToolRevision is the revision of an agent container's settings.
	ToolRevision = "maestro-deploy.release-tool.revision"
	// Proxy marks the reverse proxy in front of an environment's published
	// ports: on its container and its edge network the value is the
	// project; on the proxy image, shared by every project of an engine,
	// it is the image's content hash.
	Proxy = "maestro-deploy.proxy"
	// ProxyHash is a hash of what a proxy container runs (image, Caddy
	// configuration, bind address, published ports): a container whose
	// label differs from the wanted one is replaced, one that matches is
	// left running.
	ProxyHash = "maestro-deploy.proxy.hash"
)
