// Command kstatus computes the kstatus result (sigs.k8s.io/cli-utils, the library Flux, kpt and
// `kubectl wait --for` style tooling use) of every object it reads.
//
// Input on stdin: a JSON array of {"name": case, "object": live object}. Output on stdout: a JSON
// object mapping each case name to {"status": Current|InProgress|Failed|Terminating|..., "message"}.
// tests/unit/test_gitops_health.py feeds it the table of live objects and checks every verdict.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type testCase struct {
	Name string `json:"name"`
	// Raw, decoded as client-go decodes objects from the API server (integers as int64).
	Object json.RawMessage `json:"object"`
}

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	var cases []testCase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: stdin is not a JSON array of {name, object}:", err)
		os.Exit(2)
	}
	out := make(map[string]verdict, len(cases))
	for _, c := range cases {
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(c.Object); err != nil {
			out[c.Name] = verdict{Status: "Error", Message: err.Error()}
			continue
		}
		res, err := status.Compute(obj)
		if err != nil {
			out[c.Name] = verdict{Status: "Error", Message: err.Error()}
			continue
		}
		out[c.Name] = verdict{Status: res.Status.String(), Message: res.Message}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
