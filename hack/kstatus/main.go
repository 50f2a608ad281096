// Command kstatus computes the kstatus status of Kubernetes objects with the real library,
// sigs.k8s.io/cli-utils/pkg/kstatus/status (the rules that Flux's health checks and
// cli-utils' applier wait on), so that the Python tests can assert what it says about the
// operator's objects.
//
// It reads one JSON document from stdin: a single object, or a List ({"items": [...]}, as
// `kubectl get -o json` prints), and writes one JSON line per object:
//
//	{"kind":"...","namespace":"...","name":"...","status":"Current","message":"..."}
//
// status is one of InProgress, Current, Failed, Terminating, NotFound, Unknown (the values
// of status.Status). Bad input (not JSON, not an object, an item that is not an object, a
// field of the wrong type such as a string metadata.generation) exits 1 with a message on
// stderr and nothing on stdout. `kstatus --version` prints the module versions it was built
// with (from the binary's build info).
//
// Built by hack/build-k8s.sh into the same bin dir as the cluster binaries; pins in go.mod
// (sigs.k8s.io/cli-utils must equal KSTATUS_VERSION in hack/versions.env).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

const libraryModule = "sigs.k8s.io/cli-utils"

// line is one output record.
type line struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "version") {
		fmt.Println(versionLine())
		return
	}
	if len(os.Args) > 1 {
		fail("usage: kstatus [--version] < object-or-list.json")
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	objects, err := parse(data)
	if err != nil {
		fail("%v", err)
	}
	// Compute everything first: on an error nothing is printed (no partial answers).
	lines := make([]line, 0, len(objects))
	for i, obj := range objects {
		u := &unstructured.Unstructured{Object: obj}
		res, err := status.Compute(u)
		if err != nil {
			fail("object %d (%s): %v", i, describe(u), err)
		}
		lines = append(lines, line{
			Kind:      u.GetKind(),
			Namespace: u.GetNamespace(),
			Name:      u.GetName(),
			Status:    string(res.Status),
			Message:   res.Message,
		})
	}
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			fail("writing stdout: %v", err)
		}
	}
	if err := out.Flush(); err != nil {
		fail("writing stdout: %v", err)
	}
}

// parse returns the objects of a single object or a List. apimachinery's json.Unmarshal turns
// whole numbers into int64 (as the API machinery does), which status.Compute needs: with
// encoding/json they would be float64 and metadata.generation would not read as an integer.
func parse(data []byte) ([]map[string]interface{}, error) {
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, fmt.Errorf("empty input: expected a JSON object or a List on stdin")
	}
	var doc interface{}
	if err := utiljson.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("stdin is not valid JSON: %v", err)
	}
	obj, ok := doc.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("expected a JSON object or a List on stdin, got %s", typeName(doc))
	}
	if !isList(obj) {
		return []map[string]interface{}{obj}, nil
	}
	items, ok := obj["items"].([]interface{})
	if !ok {
		if obj["items"] == nil {
			return []map[string]interface{}{}, nil // `"items": null`: an empty list
		}
		return nil, fmt.Errorf("List.items must be an array, got %s", typeName(obj["items"]))
	}
	objects := make([]map[string]interface{}, 0, len(items))
	for i, item := range items {
		m, ok := item.(map[string]interface{})
		if !ok {
			return nil, fmt.Errorf("List.items[%d] must be an object, got %s", i, typeName(item))
		}
		objects = append(objects, m)
	}
	return objects, nil
}

// isList: the document has "items" and its kind is empty or ends in "List" (List, PodList...).
// A Kubernetes object has no top-level "items", but a kind check keeps a stray field from
// turning an object into a list.
func isList(obj map[string]interface{}) bool {
	if _, has := obj["items"]; !has {
		return false
	}
	kind, _ := obj["kind"].(string)
	return kind == "" || strings.HasSuffix(kind, "List")
}

func describe(u *unstructured.Unstructured) string {
	name := u.GetName()
	if ns := u.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return fmt.Sprintf("%s %s", u.GetKind(), name)
}

func typeName(v interface{}) string {
	switch v.(type) {
	case nil:
		return "null"
	case []interface{}:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case map[string]interface{}:
		return "an object"
	default:
		return "a number"
	}
}

// versionLine: "kstatus sigs.k8s.io/cli-utils v0.37.2 k8s.io/apimachinery v0.30.1 go1.x".
func versionLine() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "kstatus (no build info)"
	}
	parts := []string{"kstatus"}
	for _, want := range []string{libraryModule, "k8s.io/apimachinery", "k8s.io/api"} {
		for _, dep := range info.Deps {
			if dep.Path == want {
				v := dep.Version
				if dep.Replace != nil {
					v = dep.Replace.Version
				}
				parts = append(parts, want, v)
			}
		}
	}
	return strings.Join(append(parts, info.GoVersion), " ")
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(1)
}
