// Command monitoring-crd-check strictly decodes the Prometheus Operator objects of a multi-document
// YAML stream (stdin) into the Prometheus Operator's own Go API types, so an unknown field (a typo
// such as "honorLabel") or a value of the wrong type in the chart's ServiceMonitor or
// PrometheusRule fails the chart tests. kubernetes-validate has no schema for these add-on kinds.
//
// Usage: helm template ... | monitoring-crd-check
// Prints one line per checked object; exits 1 on the first object that does not decode.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

func main() {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	checked := 0
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fail("reading YAML: %v", err)
		}
		var meta typeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			fail("decoding a document's apiVersion/kind: %v", err)
		}
		gv, err := schema.ParseGroupVersion(meta.APIVersion)
		if err != nil || gv != monitoringv1.SchemeGroupVersion {
			continue
		}
		var target any
		switch meta.Kind {
		case monitoringv1.ServiceMonitorsKind:
			target = &monitoringv1.ServiceMonitor{}
		case monitoringv1.PrometheusRuleKind:
			target = &monitoringv1.PrometheusRule{}
		default:
			fail("%s %q: no check for this kind", meta.Kind, meta.Metadata.Name)
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			fail("%s %q: %v", meta.Kind, meta.Metadata.Name, err)
		}
		fmt.Printf("ok %s/%s %s\n", meta.APIVersion, meta.Kind, meta.Metadata.Name)
		checked++
	}
	fmt.Printf("%d Prometheus Operator object(s) decoded strictly\n", checked)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "monitoring-crd-check: "+format+"\n", args...)
	os.Exit(1)
}
