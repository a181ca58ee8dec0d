package compose

import "strconv"

// Args returns the full command line for a compose subcommand on a project:
// the command, the project name, each compose file, then sub. The project
// is always passed with -p, because compose v1 rejects a top-level `name:`
// in the file and v1 and v2 derive different default names.
func (c *CLI) Args(project string, files []string, sub ...string) []string {
	out := make([]string, 0, len(c.Argv)+2+2*len(files)+len(sub))
	out = append(out, c.Argv...)
	if project != "" {
		out = append(out, "-p", project)
	}
	for _, f := range files {
		out = append(out, "-f", f)
	}
	return append(out, sub...)
}

// UpStackArgs starts the named services of the stack described by files,
// and only them (--no-deps: the runner starts a stack group by group, in
// the order of their dependencies, each once it saw those ready), creating
// or recreating their containers as their configuration requires. It
// removes the containers of services that are no longer in the files, so
// files must describe every service of the project.
func (c *CLI) UpStackArgs(project string, files, services []string) []string {
	return c.Args(project, files, append([]string{"up", "-d", "--no-build", "--no-deps", "--remove-orphans"}, services...)...)
}

// StartArgs starts the named services, and only them (--no-deps), from
// images that already exist. A service in scale gets that many containers:
// the missing ones are created with the configuration in files while the
// ones it has are left as they are (--no-recreate), which is how a
// service's new container starts beside its old one. With recreate, the
// named services' containers are replaced instead (--force-recreate): the
// way to replace a service that cannot run twice at once.
func (c *CLI) StartArgs(project string, files []string, services []string, scale map[string]int, recreate bool) []string {
	sub := []string{"up", "-d", "--no-build", "--no-deps"}
	if recreate {
		sub = append(sub, "--force-recreate")
	} else {
		sub = append(sub, "--no-recreate")
	}
	for _, s := range services {
		if n, ok := scale[s]; ok {
			sub = append(sub, "--scale", s+"="+strconv.Itoa(n))
		}
	}
	return c.Args(project, files, append(sub, services...)...)
}
