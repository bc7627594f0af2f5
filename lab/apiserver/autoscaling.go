package main

// autoscaling/v2 HorizontalPodAutoscalers as kube-apiserver serves them (defaults of
// pkg/apis/autoscaling/v2/defaults.go, the validation users meet, /status), and the
// Metrics API's objects (metrics.k8s.io/v1beta1), which the lab stores: its metrics
// stand-in writes them as metrics-server computes them, kubectl top reads them.

import (
	"context"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// hpaNameRule: HPA names need only be path segments (ValidateHorizontalPodAutoscalerName).
var hpaNameRule apimachineryvalidation.ValidateNameFunc = path.ValidatePathSegmentName

func autoscalingTypes() []resourceType {
	return []resourceType{{
		gv: autoscalingv2.SchemeGroupVersion, plural: "horizontalpodautoscalers",
		singular: "horizontalpodautoscaler", shortNames: []string{"hpa"}, categories: []string{"all"},
		namespaced: true,
		newObject:  func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
		newList:    func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscalerList{} },
		prepareCreate: func(obj runtime.Object) {
			obj.(*autoscalingv2.HorizontalPodAutoscaler).Status = autoscalingv2.HorizontalPodAutoscalerStatus{}
		},
		nameValidation: hpaNameRule,
		validate:       validateHPA,
		validateUpdate: func(obj, _ runtime.Object) field.ErrorList { return validateHPA(obj) },
		statusField:    "Status",
		table:          hpaTable,
	}}
}

func metricsTypes() []resourceType {
	v1beta1 := metricsv1beta1.SchemeGroupVersion
	return []resourceType{
		{
			gv: v1beta1, plural: "pods", singular: "pod", namespaced: true,
			newObject: func() runtime.Object { return &metricsv1beta1.PodMetrics{} },
			newList:   func() runtime.Object { return &metricsv1beta1.PodMetricsList{} },
			table:     podMetricsTable,
			notFound:  metricsNotFound("podmetrics"),
		},
		{
			gv: v1beta1, plural: "nodes", singular: "node",
			newObject: func() runtime.Object { return &metricsv1beta1.NodeMetrics{} },
			newList:   func() runtime.Object { return &metricsv1beta1.NodeMetricsList{} },
			table:     nodeMetricsTable,
			notFound:  metricsNotFound("nodemetrics"),
		},
	}
}

// metricsNotFound is metrics-server's NotFound: podmetrics "<namespace>/<name>",
// nodemetrics "<name>".
func metricsNotFound(resource string) func(ctx context.Context, name string) error {
	return func(ctx context.Context, name string) error {
		if namespace, ok := genericapirequest.NamespaceFrom(ctx); ok && namespace != "" {
			name = namespace + "/" + name
		}
		return apierrors.NewNotFound(metricsv1beta1.Resource(resource), name)
	}
}

// registerAutoscaling adds the Scale kind (of /scale) and the HPA defaults.
func registerAutoscaling(scheme *runtime.Scheme) {
	scheme.AddKnownTypes(autoscalingv1.SchemeGroupVersion, &autoscalingv1.Scale{})
	scheme.AddKnownTypes(schema.GroupVersion{Group: autoscalingv1.GroupName, Version: runtime.APIVersionInternal}, &autoscalingv1.Scale{})
	scheme.AddTypeDefaultingFunc(&autoscalingv2.HorizontalPodAutoscaler{}, func(obj any) {
		defaultHPA(obj.(*autoscalingv2.HorizontalPodAutoscaler))
	})
}

// defaultHPA: minReplicas 1, 80% average CPU utilization when no metric is given, and a
// behavior, once given, completed with the controller's default rules.
func defaultHPA(h *autoscalingv2.HorizontalPodAutoscaler) {
	if h.Spec.MinReplicas == nil {
		one := int32(1)
		h.Spec.MinReplicas = &one
	}
	if len(h.Spec.Metrics) == 0 {
		utilization := int32(80)
		h.Spec.Metrics = []autoscalingv2.MetricSpec{{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricSource{
				Name:   corev1.ResourceCPU,
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &utilization},
			},
		}}
	}
	if b := h.Spec.Behavior; b != nil {
		zero, maxPolicy := int32(0), autoscalingv2.MaxChangePolicySelect
		b.ScaleUp = completeRules(b.ScaleUp, autoscalingv2.HPAScalingRules{
			StabilizationWindowSeconds: &zero,
			SelectPolicy:               &maxPolicy,
			Policies: []autoscalingv2.HPAScalingPolicy{
				{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
				{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
			},
		})
		// Scale-down's stabilization window stays unset: the controller's flag (300 s).
		b.ScaleDown = completeRules(b.ScaleDown, autoscalingv2.HPAScalingRules{
			SelectPolicy: &maxPolicy,
			Policies:     []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}},
		})
	}
}

func completeRules(given *autoscalingv2.HPAScalingRules, defaults autoscalingv2.HPAScalingRules) *autoscalingv2.HPAScalingRules {
	if given == nil {
		return &defaults
	}
	if given.SelectPolicy != nil {
		defaults.SelectPolicy = given.SelectPolicy
	}
	if given.StabilizationWindowSeconds != nil {
		defaults.StabilizationWindowSeconds = given.StabilizationWindowSeconds
	}
	if given.Policies != nil {
		defaults.Policies = given.Policies
	}
	if given.Tolerance != nil {
		defaults.Tolerance = given.Tolerance
	}
	return &defaults
}

var metricTargetTypes = []string{string(autoscalingv2.UtilizationMetricType), string(autoscalingv2.ValueMetricType), string(autoscalingv2.AverageValueMetricType)}

func validateHPA(obj runtime.Object) field.ErrorList {
	h := obj.(*autoscalingv2.HorizontalPodAutoscaler)
	spec := field.NewPath("spec")
	var errs field.ErrorList
	ref := spec.Child("scaleTargetRef")
	if h.Spec.ScaleTargetRef.Kind == "" {
		errs = append(errs, field.Required(ref.Child("kind"), ""))
	}
	if h.Spec.ScaleTargetRef.Name == "" {
		errs = append(errs, field.Required(ref.Child("name"), ""))
	} else {
		for _, message := range path.IsValidPathSegmentName(h.Spec.ScaleTargetRef.Name) {
			errs = append(errs, field.Invalid(ref.Child("name"), h.Spec.ScaleTargetRef.Name, message))
		}
	}
	if h.Spec.MinReplicas != nil && *h.Spec.MinReplicas < 1 {
		errs = append(errs, field.Invalid(spec.Child("minReplicas"), *h.Spec.MinReplicas, "must be greater than or equal to 1"))
	}
	if h.Spec.MaxReplicas < 1 {
		errs = append(errs, field.Invalid(spec.Child("maxReplicas"), h.Spec.MaxReplicas, "must be greater than or equal to 1"))
	}
	if h.Spec.MinReplicas != nil && h.Spec.MaxReplicas < *h.Spec.MinReplicas {
		errs = append(errs, field.Invalid(spec.Child("maxReplicas"), h.Spec.MaxReplicas, "must be greater than or equal to `minReplicas`"))
	}
	for i, metric := range h.Spec.Metrics {
		at := spec.Child("metrics").Index(i)
		switch metric.Type {
		case autoscalingv2.ResourceMetricSourceType:
			if metric.Resource == nil {
				errs = append(errs, field.Required(at.Child("resource"), "must populate information for the given metric source"))
				continue
			}
			errs = append(errs, validateTarget(metric.Resource.Target, at.Child("resource", "target"))...)
		case autoscalingv2.ContainerResourceMetricSourceType:
			if metric.ContainerResource == nil {
				errs = append(errs, field.Required(at.Child("containerResource"), "must populate information for the given metric source"))
				continue
			}
			errs = append(errs, validateTarget(metric.ContainerResource.Target, at.Child("containerResource", "target"))...)
		case autoscalingv2.PodsMetricSourceType, autoscalingv2.ObjectMetricSourceType, autoscalingv2.ExternalMetricSourceType:
			if (metric.Type == autoscalingv2.PodsMetricSourceType && metric.Pods == nil) ||
				(metric.Type == autoscalingv2.ObjectMetricSourceType && metric.Object == nil) ||
				(metric.Type == autoscalingv2.ExternalMetricSourceType && metric.External == nil) {
				errs = append(errs, field.Required(at, "must populate information for the given metric source"))
			}
		default:
			errs = append(errs, field.NotSupported(at.Child("type"), metric.Type, []string{
				string(autoscalingv2.ContainerResourceMetricSourceType), string(autoscalingv2.ExternalMetricSourceType),
				string(autoscalingv2.ObjectMetricSourceType), string(autoscalingv2.PodsMetricSourceType),
				string(autoscalingv2.ResourceMetricSourceType)}))
		}
	}
	return errs
}

func validateTarget(t autoscalingv2.MetricTarget, at *field.Path) field.ErrorList {
	var errs field.ErrorList
	if !sets.New(metricTargetTypes...).Has(string(t.Type)) {
		errs = append(errs, field.NotSupported(at.Child("type"), t.Type, metricTargetTypes))
	}
	if t.Type == autoscalingv2.UtilizationMetricType && t.AverageUtilization == nil {
		errs = append(errs, field.Required(at.Child("averageUtilization"), "must set either a target raw value or a target utilization"))
	}
	if t.AverageUtilization != nil && *t.AverageUtilization < 1 {
		errs = append(errs, field.Invalid(at.Child("averageUtilization"), *t.AverageUtilization, "must be greater than 0"))
	}
	return errs
}
