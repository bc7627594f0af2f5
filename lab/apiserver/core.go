package main

// The core/v1 resources the lab serves, each as kube-apiserver's registry treats it.

import (
	"net/url"

	corev1 "k8s.io/api/core/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
)

// podLogRoot is where the kubelet's CRI log files are (--pod-log-root).
var podLogRoot string

func coreTypes() []resourceType {
	v1 := corev1.SchemeGroupVersion
	return []resourceType{
		{
			gv: v1, plural: "namespaces", singular: "namespace", shortNames: []string{"ns"},
			newObject:      func() runtime.Object { return &corev1.Namespace{} },
			newList:        func() runtime.Object { return &corev1.NamespaceList{} },
			nameValidation: apimachineryvalidation.ValidateNamespaceName,
			fields: func(obj runtime.Object) fields.Set {
				return fields.Set{"status.phase": string(obj.(*corev1.Namespace).Status.Phase)}
			},
			prepareCreate: func(obj runtime.Object) {
				obj.(*corev1.Namespace).Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
			},
			table: namespaceTable,
		},
		{
			gv: v1, plural: "events", singular: "event", shortNames: []string{"ev"}, namespaced: true,
			newObject: func() runtime.Object { return &corev1.Event{} },
			newList:   func() runtime.Object { return &corev1.EventList{} },
			fields: func(obj runtime.Object) fields.Set {
				e := obj.(*corev1.Event)
				return fields.Set{
					"involvedObject.kind":            e.InvolvedObject.Kind,
					"involvedObject.namespace":       e.InvolvedObject.Namespace,
					"involvedObject.name":            e.InvolvedObject.Name,
					"involvedObject.uid":             string(e.InvolvedObject.UID),
					"involvedObject.apiVersion":      e.InvolvedObject.APIVersion,
					"involvedObject.resourceVersion": e.InvolvedObject.ResourceVersion,
					"involvedObject.fieldPath":       e.InvolvedObject.FieldPath,
					"reason":                         e.Reason,
					"reportingComponent":             e.ReportingController,
					"source":                         e.Source.Component,
					"type":                           e.Type,
				}
			},
			table: eventTable,
		},
		{
			gv: v1, plural: "pods", singular: "pod", shortNames: []string{"po"}, categories: []string{"all"},
			namespaced: true,
			newObject:  func() runtime.Object { return &corev1.Pod{} },
			newList:    func() runtime.Object { return &corev1.PodList{} },
			fields: func(obj runtime.Object) fields.Set {
				p := obj.(*corev1.Pod)
				return fields.Set{
					"spec.nodeName":            p.Spec.NodeName,
					"spec.restartPolicy":       string(p.Spec.RestartPolicy),
					"spec.schedulerName":       p.Spec.SchedulerName,
					"spec.serviceAccountName":  p.Spec.ServiceAccountName,
					"spec.hostNetwork":         boolText(p.Spec.HostNetwork),
					"status.phase":             string(p.Status.Phase),
					"status.podIP":             p.Status.PodIP,
					"status.nominatedNodeName": p.Status.NominatedNodeName,
				}
			},
			prepareCreate:       preparePodCreate,
			prepareUpdate:       bumpGenerationOnSpecChange,
			prepareStatusUpdate: preparePodStatusUpdate,
			validate:            validatePod,
			validateUpdate:      validatePodUpdate,
			statusField:         "Status",
			graceful:            podGracefulDelete,
			table:               podTable,
			subresources: func(store *genericregistry.Store) map[string]rest.Storage {
				return map[string]rest.Storage{
					"binding": &bindingREST{store},
					"log":     &podLogREST{store: store, root: podLogRoot},
				}
			},
		},
		{
			gv: v1, plural: "nodes", singular: "node", shortNames: []string{"no"},
			newObject: func() runtime.Object { return &corev1.Node{} },
			newList:   func() runtime.Object { return &corev1.NodeList{} },
			fields: func(obj runtime.Object) fields.Set {
				return fields.Set{"spec.unschedulable": boolText(obj.(*corev1.Node).Spec.Unschedulable)}
			},
			// Nodes may be created with their status (a kubelet registers so).
			statusField: "Status",
			table:       nodeTable,
		},
		{
			gv: v1, plural: "secrets", singular: "secret", namespaced: true,
			newObject: func() runtime.Object { return &corev1.Secret{} },
			newList:   func() runtime.Object { return &corev1.SecretList{} },
			fields: func(obj runtime.Object) fields.Set {
				return fields.Set{"type": string(obj.(*corev1.Secret).Type)}
			},
			prepareCreate:  mergeStringData,
			prepareUpdate:  func(obj, _ runtime.Object) { mergeStringData(obj) },
			validateUpdate: validateSecretUpdate,
			table:          secretTable,
		},
		{
			gv: v1, plural: "configmaps", singular: "configmap", shortNames: []string{"cm"}, namespaced: true,
			newObject: func() runtime.Object { return &corev1.ConfigMap{} },
			newList:   func() runtime.Object { return &corev1.ConfigMapList{} },
			table:     configMapTable,
		},
		{
			gv: v1, plural: "serviceaccounts", singular: "serviceaccount", shortNames: []string{"sa"}, namespaced: true,
			newObject: func() runtime.Object { return &corev1.ServiceAccount{} },
			newList:   func() runtime.Object { return &corev1.ServiceAccountList{} },
			table:     serviceAccountTable,
		},
	}
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// mergeStringData does what the v1 -> internal conversion of a Secret does: stringData
// is written into data (and wins), never stored.
func mergeStringData(obj runtime.Object) {
	secret := obj.(*corev1.Secret)
	for key, value := range secret.StringData {
		if secret.Data == nil {
			secret.Data = map[string][]byte{}
		}
		secret.Data[key] = []byte(value)
	}
	secret.StringData = nil
}

func validateSecretUpdate(obj, old runtime.Object) field.ErrorList {
	secret, oldSecret := obj.(*corev1.Secret), old.(*corev1.Secret)
	var errs field.ErrorList
	if secret.Type != oldSecret.Type {
		errs = append(errs, field.Invalid(field.NewPath("type"), secret.Type, "field is immutable"))
	}
	if oldSecret.Immutable != nil && *oldSecret.Immutable {
		errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
	}
	return errs
}

// registerCoreDefaults adds the defaulting kube-apiserver applies when it decodes
// core/v1 objects, and the query conversion of pods/log's options.
func registerCoreDefaults(scheme *runtime.Scheme) {
	scheme.AddTypeDefaultingFunc(&corev1.Pod{}, func(obj any) { defaultPod(obj.(*corev1.Pod)) })
	scheme.AddTypeDefaultingFunc(&corev1.Secret{}, func(obj any) {
		if s := obj.(*corev1.Secret); s.Type == "" {
			s.Type = corev1.SecretTypeOpaque
		}
	})
	scheme.AddTypeDefaultingFunc(&corev1.Node{}, func(obj any) {
		// SetDefaults_NodeStatus: allocatable defaults to capacity.
		if n := obj.(*corev1.Node); n.Status.Allocatable == nil && n.Status.Capacity != nil {
			n.Status.Allocatable = n.Status.Capacity.DeepCopy()
		}
	})
	scheme.AddTypeDefaultingFunc(&corev1.Namespace{}, func(obj any) {
		if n := obj.(*corev1.Namespace); n.Status.Phase == "" {
			n.Status.Phase = corev1.NamespaceActive
		}
	})
	utilruntime.Must(scheme.AddConversionFunc((*url.Values)(nil), (*corev1.PodLogOptions)(nil), func(a, b any, scope conversion.Scope) error {
		return convertLogQuery(a.(*url.Values), b.(*corev1.PodLogOptions), scope)
	}))
}
