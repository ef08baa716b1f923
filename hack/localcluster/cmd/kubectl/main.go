// Command kubectl is the upstream kubectl at the same release as the API server,
// so the tests and the demo never depend on whichever kubectl the machine has.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// kubectl prints its own errors; keep its exit-code convention.
		util.CheckErr(err)
	}
}
