// Command argocd-health runs the health scripts of deploy/argocd/argocd-cm-health.yaml in Argo CD's
// own Lua health engine (github.com/argoproj/argo-cd/v3/util/lua, gitops-engine's GetResourceHealth,
// which also applies Argo CD's handling of objects being deleted) and says what a sync wave does
// with each verdict, using the same rule as gitops-engine's sync context: Healthy completes the
// task, Degraded fails it, Progressing and Suspended keep it running (the wave waits).
//
// Usage: argocd-health ARGOCD_CM_YAML < cases.json   (cases: [{"name", "object"}])
// Output: {"case": {"status", "message", "wave": "completes"|"fails"|"waits"}}
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/health"
	appv1 "github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const healthPrefix = "resource.customizations.health."

type testCase struct {
	Name string `json:"name"`
	// Raw, decoded as client-go decodes objects from the API server (integers as int64).
	Object json.RawMessage `json:"object"`
}

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Wave    string `json:"wave"`
}

// overrides turns argocd-cm's resource.customizations.health.<group>_<Kind> keys into the
// <group>/<Kind> overrides Argo CD's settings manager builds from them.
func overrides(path string) (lua.ResourceHealthOverrides, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return nil, err
	}
	out := lua.ResourceHealthOverrides{}
	for key, script := range cm.Data {
		if !strings.HasPrefix(key, healthPrefix) {
			continue
		}
		gk := strings.TrimPrefix(key, healthPrefix)
		i := strings.LastIndex(gk, "_")
		if i < 0 {
			return nil, fmt.Errorf("%s: expected <group>_<Kind>", key)
		}
		out[gk[:i]+"/"+gk[i+1:]] = appv1.ResourceOverride{HealthLua: script}
	}
	return out, nil
}

func wave(code health.HealthStatusCode) string {
	switch code {
	case health.HealthStatusHealthy:
		return "completes"
	case health.HealthStatusDegraded:
		return "fails"
	default:
		return "waits"
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health ARGOCD_CM_YAML < cases.json")
		os.Exit(2)
	}
	ov, err := overrides(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health:", err)
		os.Exit(2)
	}
	var cases []testCase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health: stdin is not a JSON array of {name, object}:", err)
		os.Exit(2)
	}
	out := make(map[string]verdict, len(cases))
	for _, c := range cases {
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(c.Object); err != nil {
			out[c.Name] = verdict{Status: "Error", Message: err.Error()}
			continue
		}
		hs, err := health.GetResourceHealth(obj, ov)
		switch {
		case err != nil:
			out[c.Name] = verdict{Status: "Error", Message: err.Error(), Wave: "fails"}
		case hs == nil:
			out[c.Name] = verdict{Status: "None", Message: "no health check", Wave: "completes"}
		default:
			out[c.Name] = verdict{Status: string(hs.Status), Message: hs.Message, Wave: wave(hs.Status)}
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health:", err)
		os.Exit(1)
	}
}
