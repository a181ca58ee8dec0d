// Command quality-fabric is a sample Maestro service: see internal/svc.
package main

import "github.com/maestro-platform/deploy/examples/maestro-platform/internal/svc"

func main() { svc.Main() }
