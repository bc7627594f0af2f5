package main

// apps/v1 Deployments and ReplicaSets as kube-apiserver serves them: the defaults of
// pkg/apis/apps/v1/defaults.go (the pod template defaulted as pods are), generation,
// the validation of pkg/apis/apps/validation users meet, /status and /scale. Nothing
// reconciles them here but the lab's controller stand-in, which writes their status.

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
)

// scalable is what the scale subresource reads and writes of a workload.
type scalable struct {
	replicas       func(obj runtime.Object) **int32
	selector       func(obj runtime.Object) *metav1.LabelSelector
	statusReplicas func(obj runtime.Object) int32
}

func appsTypes() []resourceType {
	v1 := appsv1.SchemeGroupVersion
	deployments := scalable{
		replicas:       func(obj runtime.Object) **int32 { return &obj.(*appsv1.Deployment).Spec.Replicas },
		selector:       func(obj runtime.Object) *metav1.LabelSelector { return obj.(*appsv1.Deployment).Spec.Selector },
		statusReplicas: func(obj runtime.Object) int32 { return obj.(*appsv1.Deployment).Status.Replicas },
	}
	replicaSets := scalable{
		replicas:       func(obj runtime.Object) **int32 { return &obj.(*appsv1.ReplicaSet).Spec.Replicas },
		selector:       func(obj runtime.Object) *metav1.LabelSelector { return obj.(*appsv1.ReplicaSet).Spec.Selector },
		statusReplicas: func(obj runtime.Object) int32 { return obj.(*appsv1.ReplicaSet).Status.Replicas },
	}
	return []resourceType{
		{
			gv: v1, plural: "deployments", singular: "deployment", shortNames: []string{"deploy"},
			categories: []string{"all"}, namespaced: true,
			newObject:      func() runtime.Object { return &appsv1.Deployment{} },
			newList:        func() runtime.Object { return &appsv1.DeploymentList{} },
			prepareCreate:  resetStatus(nil),
			prepareUpdate:  bumpGenerationOnSpecChange,
			validate:       validateDeployment,
			validateUpdate: validateDeploymentUpdate,
			statusField:    "Status",
			table:          deploymentTable,
			subresources:   scaleSubresource(deployments),
		},
		{
			gv: v1, plural: "replicasets", singular: "replicaset", shortNames: []string{"rs"},
			categories: []string{"all"}, namespaced: true,
			newObject: func() runtime.Object { return &appsv1.ReplicaSet{} },
			newList:   func() runtime.Object { return &appsv1.ReplicaSetList{} },
			fields: func(obj runtime.Object) fields.Set {
				return fields.Set{"status.replicas": fmt.Sprint(obj.(*appsv1.ReplicaSet).Status.Replicas)}
			},
			prepareCreate:  resetStatus(nil),
			prepareUpdate:  bumpGenerationOnSpecChange,
			validate:       validateReplicaSet,
			validateUpdate: validateReplicaSetUpdate,
			statusField:    "Status",
			table:          replicaSetTable,
			subresources:   scaleSubresource(replicaSets),
		},
	}
}

// registerAppsDefaults adds SetObjectDefaults_Deployment and _ReplicaSet.
func registerAppsDefaults(scheme *runtime.Scheme) {
	scheme.AddTypeDefaultingFunc(&appsv1.Deployment{}, func(obj any) {
		d := obj.(*appsv1.Deployment)
		defaultReplicas(&d.Spec.Replicas)
		s := &d.Spec.Strategy
		if s.Type == "" {
			s.Type = appsv1.RollingUpdateDeploymentStrategyType
		}
		if s.Type == appsv1.RollingUpdateDeploymentStrategyType {
			if s.RollingUpdate == nil {
				s.RollingUpdate = &appsv1.RollingUpdateDeployment{}
			}
			quarter := intstr.FromString("25%")
			if s.RollingUpdate.MaxUnavailable == nil {
				value := quarter
				s.RollingUpdate.MaxUnavailable = &value
			}
			if s.RollingUpdate.MaxSurge == nil {
				value := quarter
				s.RollingUpdate.MaxSurge = &value
			}
		}
		if d.Spec.RevisionHistoryLimit == nil {
			limit := int32(10)
			d.Spec.RevisionHistoryLimit = &limit
		}
		if d.Spec.ProgressDeadlineSeconds == nil {
			deadline := int32(600)
			d.Spec.ProgressDeadlineSeconds = &deadline
		}
		defaultPodSpec(&d.Spec.Template.Spec)
	})
	scheme.AddTypeDefaultingFunc(&appsv1.ReplicaSet{}, func(obj any) {
		r := obj.(*appsv1.ReplicaSet)
		defaultReplicas(&r.Spec.Replicas)
		defaultPodSpec(&r.Spec.Template.Spec)
	})
}

func defaultReplicas(replicas **int32) {
	if *replicas == nil {
		one := int32(1)
		*replicas = &one
	}
}

// --- validation ---------------------------------------------------------------------------

func validateDeployment(obj runtime.Object) field.ErrorList {
	d := obj.(*appsv1.Deployment)
	spec := field.NewPath("spec")
	errs := validateWorkload(d.Spec.Replicas, d.Spec.Selector, &d.Spec.Template, spec, "deployment")
	errs = append(errs, validateStrategy(d.Spec.Strategy, spec.Child("strategy"))...)
	if d.Spec.RevisionHistoryLimit != nil && *d.Spec.RevisionHistoryLimit < 0 {
		errs = append(errs, field.Invalid(spec.Child("revisionHistoryLimit"), *d.Spec.RevisionHistoryLimit, "must be greater than or equal to 0"))
	}
	if d.Spec.MinReadySeconds < 0 {
		errs = append(errs, field.Invalid(spec.Child("minReadySeconds"), d.Spec.MinReadySeconds, "must be greater than or equal to 0"))
	}
	if deadline := d.Spec.ProgressDeadlineSeconds; deadline != nil {
		if *deadline < 0 {
			errs = append(errs, field.Invalid(spec.Child("progressDeadlineSeconds"), *deadline, "must be greater than or equal to 0"))
		} else if *deadline <= d.Spec.MinReadySeconds {
			errs = append(errs, field.Invalid(spec.Child("progressDeadlineSeconds"), *deadline, "must be greater than minReadySeconds"))
		}
	}
	return errs
}

func validateDeploymentUpdate(obj, old runtime.Object) field.ErrorList {
	d, oldD := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
	return append(validateDeployment(d), immutableSelector(d.Spec.Selector, oldD.Spec.Selector)...)
}

func validateReplicaSet(obj runtime.Object) field.ErrorList {
	r := obj.(*appsv1.ReplicaSet)
	errs := validateWorkload(r.Spec.Replicas, r.Spec.Selector, &r.Spec.Template, field.NewPath("spec"), "replicaset")
	if r.Spec.MinReadySeconds < 0 {
		errs = append(errs, field.Invalid(field.NewPath("spec", "minReadySeconds"), r.Spec.MinReadySeconds, "must be greater than or equal to 0"))
	}
	return errs
}

func validateReplicaSetUpdate(obj, old runtime.Object) field.ErrorList {
	r, oldR := obj.(*appsv1.ReplicaSet), old.(*appsv1.ReplicaSet)
	return append(validateReplicaSet(r), immutableSelector(r.Spec.Selector, oldR.Spec.Selector)...)
}

func immutableSelector(selector, old *metav1.LabelSelector) field.ErrorList {
	if apiequality.Semantic.DeepEqual(selector, old) {
		return nil
	}
	return field.ErrorList{field.Invalid(field.NewPath("spec", "selector"), selector, "field is immutable")}
}

// validateWorkload: replicas, a selector that selects the template's labels, and a
// template whose pods a controller can keep running.
func validateWorkload(replicas *int32, selector *metav1.LabelSelector, template *corev1.PodTemplateSpec, spec *field.Path, what string) field.ErrorList {
	var errs field.ErrorList
	if replicas != nil && *replicas < 0 {
		errs = append(errs, field.Invalid(spec.Child("replicas"), *replicas, "must be greater than or equal to 0"))
	}
	at := spec.Child("selector")
	if selector == nil {
		errs = append(errs, field.Required(at, ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(selector, metav1validation.LabelSelectorValidationOptions{}, at)...)
		if len(selector.MatchLabels)+len(selector.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(at, selector, "empty selector is invalid for "+what))
		}
	}
	templateAt := spec.Child("template")
	if parsed, err := metav1.LabelSelectorAsSelector(selector); err != nil {
		errs = append(errs, field.Invalid(at, selector, "invalid label selector"))
	} else if !parsed.Empty() && !parsed.Matches(labels.Set(template.Labels)) {
		errs = append(errs, field.Invalid(templateAt.Child("metadata", "labels"), template.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, metav1validation.ValidateLabels(template.Labels, templateAt.Child("metadata", "labels"))...)
	errs = append(errs, validatePodSpec(&template.Spec, templateAt.Child("spec"), true)...)
	if template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(templateAt.Child("spec", "restartPolicy"), template.Spec.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
	}
	if template.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(templateAt.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in ReplicaSet is not Supported"))
	}
	return errs
}

func validateStrategy(s appsv1.DeploymentStrategy, at *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if s.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(at.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		if s.RollingUpdate == nil {
			errs = append(errs, field.Required(at.Child("rollingUpdate"), "this should be defaulted and never be nil"))
			break
		}
		rolling := at.Child("rollingUpdate")
		errs = append(errs, validateIntOrPercent(s.RollingUpdate.MaxUnavailable, rolling.Child("maxUnavailable"))...)
		errs = append(errs, validateIntOrPercent(s.RollingUpdate.MaxSurge, rolling.Child("maxSurge"))...)
		if isZero(s.RollingUpdate.MaxUnavailable) && isZero(s.RollingUpdate.MaxSurge) {
			errs = append(errs, field.Invalid(rolling.Child("maxUnavailable"), s.RollingUpdate.MaxUnavailable.String(), "may not be 0 when `maxSurge` is 0"))
		}
		if v := s.RollingUpdate.MaxUnavailable; v != nil && v.Type == intstr.String {
			if percent, err := intstr.GetScaledValueFromIntOrPercent(v, 100, false); err == nil && percent > 100 {
				errs = append(errs, field.Invalid(rolling.Child("maxUnavailable"), v.String(), "must not be greater than 100%"))
			}
		}
	default:
		errs = append(errs, field.NotSupported(at.Child("type"), s.Type, []string{string(appsv1.RecreateDeploymentStrategyType), string(appsv1.RollingUpdateDeploymentStrategyType)}))
	}
	return errs
}

func validateIntOrPercent(v *intstr.IntOrString, at *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	if v.Type == intstr.String {
		if _, err := intstr.GetScaledValueFromIntOrPercent(v, 100, false); err != nil || len(validation.IsValidPercent(v.StrVal)) > 0 {
			return field.ErrorList{field.Invalid(at, v.StrVal, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")}
		}
		return nil
	}
	if v.IntVal < 0 {
		return field.ErrorList{field.Invalid(at, v.IntVal, "must be greater than or equal to 0")}
	}
	return nil
}

func isZero(v *intstr.IntOrString) bool {
	if v == nil {
		return true
	}
	if v.Type == intstr.Int {
		return v.IntVal == 0
	}
	return v.StrVal == "0%"
}

// --- /scale -----------------------------------------------------------------------------

func scaleSubresource(s scalable) func(store *genericregistry.Store) map[string]rest.Storage {
	return func(store *genericregistry.Store) map[string]rest.Storage {
		return map[string]rest.Storage{"scale": &scaleREST{store, s}}
	}
}

// scaleREST is the autoscaling/v1 Scale of a workload (kubectl scale, the HPA).
type scaleREST struct {
	store *genericregistry.Store
	of    scalable
}

func (r *scaleREST) New() runtime.Object { return &autoscalingv1.Scale{} }
func (r *scaleREST) Destroy()            {}

func (r *scaleREST) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return autoscalingv1.SchemeGroupVersion.WithKind("Scale")
}

func (r *scaleREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	obj, err := r.store.Get(ctx, name, options)
	if err != nil {
		return nil, err
	}
	return r.scaleOf(obj), nil
}

func (r *scaleREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo,
	createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc,
	_ bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	onCreate := func(ctx context.Context, obj runtime.Object) error {
		if createValidation == nil {
			return nil
		}
		return createValidation(ctx, r.scaleOf(obj))
	}
	onUpdate := func(ctx context.Context, obj, old runtime.Object) error {
		if updateValidation == nil {
			return nil
		}
		return updateValidation(ctx, r.scaleOf(obj), r.scaleOf(old))
	}
	obj, _, err := r.store.Update(ctx, name, &scaleUpdate{r, name, objInfo}, onCreate, onUpdate, false, options)
	if err != nil {
		return nil, false, err
	}
	return r.scaleOf(obj), false, nil
}

func (r *scaleREST) scaleOf(obj runtime.Object) *autoscalingv1.Scale {
	m := mustMeta(obj)
	scale := &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{
			Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
			ResourceVersion: m.GetResourceVersion(), CreationTimestamp: m.GetCreationTimestamp(),
		},
		Status: autoscalingv1.ScaleStatus{Replicas: r.of.statusReplicas(obj)},
	}
	if replicas := *r.of.replicas(obj); replicas != nil {
		scale.Spec.Replicas = *replicas
	}
	if selector, err := metav1.LabelSelectorAsSelector(r.of.selector(obj)); err == nil {
		scale.Status.Selector = selector.String()
	}
	return scale
}

// scaleUpdate turns an update of the Scale into one of its workload's spec.replicas.
type scaleUpdate struct {
	rest    *scaleREST
	name    string
	request rest.UpdatedObjectInfo
}

func (u *scaleUpdate) Preconditions() *metav1.Preconditions { return u.request.Preconditions() }

func (u *scaleUpdate) UpdatedObject(ctx context.Context, oldObj runtime.Object) (runtime.Object, error) {
	workload := oldObj.DeepCopyObject()
	old := u.rest.scaleOf(workload)
	if old.ResourceVersion == "" {
		return nil, apierrors.NewNotFound(u.rest.store.DefaultQualifiedResource, u.name)
	}
	obj, err := u.request.UpdatedObject(ctx, old)
	if err != nil {
		return nil, err
	}
	scale, ok := obj.(*autoscalingv1.Scale)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected input object type to be Scale, but %T", obj))
	}
	if scale.Spec.Replicas < 0 {
		errs := field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), scale.Spec.Replicas, "must be greater than or equal to 0")}
		return nil, apierrors.NewInvalid(schema.GroupKind{Group: "autoscaling", Kind: "Scale"}, u.name, errs)
	}
	if scale.UID != "" && scale.UID != old.UID {
		return nil, apierrors.NewConflict(u.rest.store.DefaultQualifiedResource, u.name,
			fmt.Errorf("precondition failed: UID in precondition: %v, UID in object meta: %v", scale.UID, old.UID))
	}
	replicas := scale.Spec.Replicas
	*u.rest.of.replicas(workload) = &replicas
	mustMeta(workload).SetResourceVersion(scale.ResourceVersion)
	return workload, nil
}
