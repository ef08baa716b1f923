// Command kube-apiserver is the upstream Kubernetes API server, built from its
// Go module at the release pinned in ../../go.mod. The project runs it on
// loopback for tests and the demo (see controller/localcluster).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
