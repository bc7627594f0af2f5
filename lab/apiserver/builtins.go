package main

// The built-in API groups the lab serves, registered in one scheme and installed on the
// built-in server.

import (
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericapiserver "k8s.io/apiserver/pkg/server"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// servedVersions are the group versions objects are stored in.
var servedVersions = []schema.GroupVersion{
	corev1.SchemeGroupVersion, appsv1.SchemeGroupVersion,
	autoscalingv2.SchemeGroupVersion, metricsv1beta1.SchemeGroupVersion,
}

// builtinGroups are the types of each served group version, the legacy core group first.
func builtinGroups() [][]resourceType {
	return [][]resourceType{coreTypes(), appsTypes(), autoscalingTypes(), metricsTypes()}
}

func init() {
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv1.AddToScheme,
		autoscalingv2.AddToScheme, metricsv1beta1.AddToScheme,
	} {
		utilruntime.Must(add(labScheme))
	}
	// Binding and PodLogOptions are the bodies and options of pods' subresources.
	internalCore := schema.GroupVersion{Version: runtime.APIVersionInternal}
	labScheme.AddKnownTypes(internalCore, &corev1.Binding{}, &corev1.PodLogOptions{})
	for _, group := range builtinGroups() {
		for _, t := range group {
			t.register(labScheme)
		}
	}
	registerCoreDefaults(labScheme)
	registerAppsDefaults(labScheme)
	registerAutoscaling(labScheme)
}

// installBuiltins serves every built-in group; the core group's parameter codec knows
// pods/log's options.
func installBuiltins(server *genericapiserver.GenericAPIServer, getter generic.RESTOptionsGetter) error {
	for i, group := range builtinGroups() {
		codec := metav1.ParameterCodec
		if i == 0 {
			codec = runtime.NewParameterCodec(labScheme)
		}
		if err := installGroup(server, getter, codec, group, i == 0); err != nil {
			return err
		}
	}
	return nil
}
