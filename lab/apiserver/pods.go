package main

// Pods as kube-apiserver serves them: the defaults of pkg/apis/core/v1/defaults.go and of
// the admission plugins every cluster runs (ServiceAccount, Priority,
// DefaultTolerationSeconds), the validation of the fields users get wrong
// (pkg/apis/core/validation), the registry's strategy (status reset, generation,
// graceful deletion) and the binding subresource (pkg/registry/core/pod/storage).

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"
)

// --- defaults ---------------------------------------------------------------------------

// defaultPod is SetObjectDefaults_Pod plus what admission adds to every pod.
func defaultPod(pod *corev1.Pod) {
	defaultPodSpec(&pod.Spec)
	// SetDefaults_Pod: requests default to limits, container by container.
	for i := range pod.Spec.Containers {
		defaultRequestsToLimits(&pod.Spec.Containers[i].Resources)
	}
	for i := range pod.Spec.InitContainers {
		defaultRequestsToLimits(&pod.Spec.InitContainers[i].Resources)
	}
	if pod.Spec.EnableServiceLinks == nil {
		enabled := corev1.DefaultEnableServiceLinks
		pod.Spec.EnableServiceLinks = &enabled
	}
}

// admitPod is what the ServiceAccount, Priority and DefaultTolerationSeconds admission
// plugins set on a created pod.
func admitPod(pod *corev1.Pod) {
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = "default"
	}
	pod.Spec.DeprecatedServiceAccount = pod.Spec.ServiceAccountName
	if pod.Spec.Priority == nil && pod.Spec.PriorityClassName == "" {
		priority := int32(0)
		pod.Spec.Priority = &priority
	}
	if pod.Spec.PreemptionPolicy == nil {
		policy := corev1.PreemptLowerPriority
		pod.Spec.PreemptionPolicy = &policy
	}
	for _, taint := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		if !toleratesNoExecute(pod.Spec.Tolerations, taint) {
			seconds := int64(300)
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{
				Key: taint, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute,
				TolerationSeconds: &seconds,
			})
		}
	}
}

func toleratesNoExecute(tolerations []corev1.Toleration, key string) bool {
	for _, t := range tolerations {
		if (t.Key == key || t.Key == "") && (t.Effect == corev1.TaintEffectNoExecute || t.Effect == "") {
			return true
		}
	}
	return false
}

// defaultPodSpec is SetDefaults_PodSpec and what it calls for containers and volumes:
// also the defaults of a workload's pod template.
func defaultPodSpec(spec *corev1.PodSpec) {
	if spec.DNSPolicy == "" {
		spec.DNSPolicy = corev1.DNSClusterFirst
	}
	if spec.RestartPolicy == "" {
		spec.RestartPolicy = corev1.RestartPolicyAlways
	}
	if spec.SecurityContext == nil {
		spec.SecurityContext = &corev1.PodSecurityContext{}
	}
	if spec.TerminationGracePeriodSeconds == nil {
		period := int64(corev1.DefaultTerminationGracePeriodSeconds)
		spec.TerminationGracePeriodSeconds = &period
	}
	if spec.SchedulerName == "" {
		spec.SchedulerName = corev1.DefaultSchedulerName
	}
	for i := range spec.InitContainers {
		defaultContainer(&spec.InitContainers[i])
	}
	for i := range spec.Containers {
		defaultContainer(&spec.Containers[i])
	}
	for i := range spec.Volumes {
		defaultVolume(&spec.Volumes[i])
	}
}

func defaultContainer(c *corev1.Container) {
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = defaultPullPolicy(c.Image)
	}
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = corev1.TerminationMessagePathDefault
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	}
	for i := range c.Ports {
		if c.Ports[i].Protocol == "" {
			c.Ports[i].Protocol = corev1.ProtocolTCP
		}
	}
	for i := range c.Env {
		if from := c.Env[i].ValueFrom; from != nil && from.FieldRef != nil && from.FieldRef.APIVersion == "" {
			from.FieldRef.APIVersion = "v1"
		}
	}
	for _, probe := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		defaultProbe(probe)
	}
}

// defaultPullPolicy: Always for :latest or no tag, else IfNotPresent (a digest counts
// as a tag).
func defaultPullPolicy(image string) corev1.PullPolicy {
	if strings.Contains(image, "@") {
		return corev1.PullIfNotPresent
	}
	name := image[strings.LastIndex(image, "/")+1:]
	colon := strings.LastIndex(name, ":")
	if colon < 0 || name[colon+1:] == "latest" {
		return corev1.PullAlways
	}
	return corev1.PullIfNotPresent
}

func defaultProbe(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	if h := p.HTTPGet; h != nil {
		if h.Path == "" {
			h.Path = "/"
		}
		if h.Scheme == "" {
			h.Scheme = corev1.URISchemeHTTP
		}
	}
}

func defaultVolume(v *corev1.Volume) {
	source := v.VolumeSource
	if source == (corev1.VolumeSource{}) {
		v.EmptyDir = &corev1.EmptyDirVolumeSource{}
	}
	mode := int32(corev1.SecretVolumeSourceDefaultMode)
	if v.Secret != nil && v.Secret.DefaultMode == nil {
		v.Secret.DefaultMode = &mode
	}
	if v.ConfigMap != nil && v.ConfigMap.DefaultMode == nil {
		v.ConfigMap.DefaultMode = &mode
	}
	if v.Projected != nil && v.Projected.DefaultMode == nil {
		v.Projected.DefaultMode = &mode
	}
}

func defaultRequestsToLimits(r *corev1.ResourceRequirements) {
	for name, limit := range r.Limits {
		if _, set := r.Requests[name]; !set {
			if r.Requests == nil {
				r.Requests = corev1.ResourceList{}
			}
			r.Requests[name] = limit.DeepCopy()
		}
	}
}

// --- the registry's strategy --------------------------------------------------------------

func preparePodCreate(obj runtime.Object) {
	pod := obj.(*corev1.Pod)
	admitPod(pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: podQOS(pod)}
	pod.Generation = 1
}

// preparePodStatusUpdate: the qos class is immutable (an old kubelet's status without it
// keeps it), and observedGeneration values a status leaves out are kept.
func preparePodStatusUpdate(obj, old runtime.Object) {
	pod, oldPod := obj.(*corev1.Pod), old.(*corev1.Pod)
	if pod.Status.QOSClass == "" {
		pod.Status.QOSClass = oldPod.Status.QOSClass
	}
	if pod.Status.ObservedGeneration == 0 {
		pod.Status.ObservedGeneration = oldPod.Status.ObservedGeneration
	}
	previous := map[corev1.PodConditionType][]int64{}
	for _, c := range oldPod.Status.Conditions {
		previous[c.Type] = append(previous[c.Type], c.ObservedGeneration)
	}
	for i, c := range pod.Status.Conditions {
		kept := int64(0)
		if generations := previous[c.Type]; len(generations) > 0 {
			kept, previous[c.Type] = generations[0], generations[1:]
		}
		if c.ObservedGeneration == 0 {
			pod.Status.Conditions[i].ObservedGeneration = kept
		}
	}
}

// podQOS is the qos class of pkg/apis/core/helper/qos: Guaranteed when every container's
// cpu and memory requests equal their limits, BestEffort when nothing is requested or
// limited, else Burstable.
func podQOS(pod *corev1.Pod) corev1.PodQOSClass {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	guaranteed := true
	containers := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range containers {
		for name, q := range c.Resources.Requests {
			if name == corev1.ResourceCPU || name == corev1.ResourceMemory {
				if !q.IsZero() {
					sum := requests[name]
					sum.Add(q)
					requests[name] = sum
				}
			}
		}
		found := 0
		for name, q := range c.Resources.Limits {
			if name == corev1.ResourceCPU || name == corev1.ResourceMemory {
				if !q.IsZero() {
					found++
					sum := limits[name]
					sum.Add(q)
					limits[name] = sum
				}
			}
		}
		if found < 2 {
			guaranteed = false
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed {
		for name, request := range requests {
			if limit, ok := limits[name]; !ok || limit.Cmp(request) != 0 {
				guaranteed = false
			}
		}
	}
	if guaranteed && len(requests) == len(limits) {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

// podGracefulDelete is the pod strategy's CheckGracefulDelete: the grace period asked
// for, else the pod's terminationGracePeriodSeconds; zero for a pod no node runs (not
// bound, or finished).
func podGracefulDelete(obj runtime.Object, options *metav1.DeleteOptions) bool {
	if options == nil {
		return false
	}
	pod := obj.(*corev1.Pod)
	period := int64(0)
	if options.GracePeriodSeconds != nil {
		period = *options.GracePeriodSeconds
	} else if pod.Spec.TerminationGracePeriodSeconds != nil {
		period = *pod.Spec.TerminationGracePeriodSeconds
	}
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		period = 0
	}
	if period < 0 {
		period = 1
	}
	options.GracePeriodSeconds = &period
	return true
}

// --- validation ---------------------------------------------------------------------------

func validatePod(obj runtime.Object) field.ErrorList {
	pod := obj.(*corev1.Pod)
	return validatePodSpec(&pod.Spec, field.NewPath("spec"), true)
}

var (
	restartPolicies = []string{string(corev1.RestartPolicyAlways), string(corev1.RestartPolicyOnFailure), string(corev1.RestartPolicyNever)}
	dnsPolicies     = []string{string(corev1.DNSClusterFirstWithHostNet), string(corev1.DNSClusterFirst), string(corev1.DNSDefault), string(corev1.DNSNone)}
	pullPolicies    = []string{string(corev1.PullAlways), string(corev1.PullIfNotPresent), string(corev1.PullNever)}
	messagePolicies = []string{string(corev1.TerminationMessageReadFile), string(corev1.TerminationMessageFallbackToLogsOnError)}
	protocols       = []string{string(corev1.ProtocolTCP), string(corev1.ProtocolUDP), string(corev1.ProtocolSCTP)}
)

// validatePodSpec checks what pkg/apis/core/validation checks of the fields users write;
// imageRequired is false for workload templates (a controller may fill images in).
func validatePodSpec(spec *corev1.PodSpec, path *field.Path, imageRequired bool) field.ErrorList {
	var errs field.ErrorList
	volumes := sets.New[string]()
	for i, v := range spec.Volumes {
		at := path.Child("volumes").Index(i).Child("name")
		switch {
		case v.Name == "":
			errs = append(errs, field.Required(at, ""))
		case volumes.Has(v.Name):
			errs = append(errs, field.Duplicate(at, v.Name))
		default:
			errs = append(errs, dnsLabel(at, v.Name)...)
		}
		volumes.Insert(v.Name)
	}
	names := sets.New[string]()
	errs = append(errs, validateContainers(spec.InitContainers, path.Child("initContainers"), names, volumes, imageRequired)...)
	if len(spec.Containers) == 0 {
		errs = append(errs, field.Required(path.Child("containers"), ""))
	}
	errs = append(errs, validateContainers(spec.Containers, path.Child("containers"), names, volumes, imageRequired)...)
	if !sets.New(restartPolicies...).Has(string(spec.RestartPolicy)) {
		errs = append(errs, field.NotSupported(path.Child("restartPolicy"), spec.RestartPolicy, restartPolicies))
	}
	if !sets.New(dnsPolicies...).Has(string(spec.DNSPolicy)) {
		errs = append(errs, field.NotSupported(path.Child("dnsPolicy"), spec.DNSPolicy, dnsPolicies))
	}
	if spec.ActiveDeadlineSeconds != nil && *spec.ActiveDeadlineSeconds <= 0 {
		errs = append(errs, field.Invalid(path.Child("activeDeadlineSeconds"), *spec.ActiveDeadlineSeconds, "must be between 1 and 2147483647, inclusive"))
	}
	if spec.NodeName != "" {
		for _, message := range apimachineryvalidation.NameIsDNSSubdomain(spec.NodeName, false) {
			errs = append(errs, field.Invalid(path.Child("nodeName"), spec.NodeName, message))
		}
	}
	if spec.ServiceAccountName != "" {
		for _, message := range apimachineryvalidation.NameIsDNSSubdomain(spec.ServiceAccountName, false) {
			errs = append(errs, field.Invalid(path.Child("serviceAccountName"), spec.ServiceAccountName, message))
		}
	}
	for key, value := range spec.NodeSelector {
		for _, message := range validation.IsQualifiedName(key) {
			errs = append(errs, field.Invalid(path.Child("nodeSelector"), key, message))
		}
		for _, message := range validation.IsValidLabelValue(value) {
			errs = append(errs, field.Invalid(path.Child("nodeSelector").Key(key), value, message))
		}
	}
	return errs
}

func dnsLabel(at *field.Path, value string) field.ErrorList {
	var errs field.ErrorList
	for _, message := range validation.IsDNS1123Label(value) {
		errs = append(errs, field.Invalid(at, value, message))
	}
	return errs
}

func validateContainers(containers []corev1.Container, path *field.Path, names, volumes sets.Set[string], imageRequired bool) field.ErrorList {
	var errs field.ErrorList
	for i, c := range containers {
		at := path.Index(i)
		switch {
		case c.Name == "":
			errs = append(errs, field.Required(at.Child("name"), ""))
		case names.Has(c.Name):
			errs = append(errs, field.Duplicate(at.Child("name"), c.Name))
		default:
			errs = append(errs, dnsLabel(at.Child("name"), c.Name)...)
		}
		names.Insert(c.Name)
		if imageRequired && strings.TrimSpace(c.Image) == "" {
			errs = append(errs, field.Required(at.Child("image"), ""))
		} else if c.Image != strings.TrimSpace(c.Image) {
			errs = append(errs, field.Invalid(at.Child("image"), c.Image, "must not have leading or trailing whitespace"))
		}
		if !sets.New(pullPolicies...).Has(string(c.ImagePullPolicy)) {
			errs = append(errs, field.NotSupported(at.Child("imagePullPolicy"), c.ImagePullPolicy, pullPolicies))
		}
		if !sets.New(messagePolicies...).Has(string(c.TerminationMessagePolicy)) {
			errs = append(errs, field.NotSupported(at.Child("terminationMessagePolicy"), c.TerminationMessagePolicy, messagePolicies))
		}
		errs = append(errs, validatePorts(c.Ports, at.Child("ports"))...)
		for j, env := range c.Env {
			for _, message := range validation.IsEnvVarName(env.Name) {
				errs = append(errs, field.Invalid(at.Child("env").Index(j).Child("name"), env.Name, message))
			}
		}
		for j, mount := range c.VolumeMounts {
			mountAt := at.Child("volumeMounts").Index(j)
			if !volumes.Has(mount.Name) {
				errs = append(errs, field.NotFound(mountAt.Child("name"), mount.Name))
			}
			if mount.MountPath == "" {
				errs = append(errs, field.Required(mountAt.Child("mountPath"), ""))
			}
		}
		errs = append(errs, validateResources(c.Resources, at.Child("resources"))...)
	}
	return errs
}

func validatePorts(ports []corev1.ContainerPort, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, p := range ports {
		at := path.Index(i)
		if p.Name != "" {
			for _, message := range validation.IsValidPortName(p.Name) {
				errs = append(errs, field.Invalid(at.Child("name"), p.Name, message))
			}
			if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(at.Child("name"), p.Name))
			}
			names.Insert(p.Name)
		}
		if p.ContainerPort == 0 {
			errs = append(errs, field.Required(at.Child("containerPort"), ""))
		} else {
			for _, message := range validation.IsValidPortNum(int(p.ContainerPort)) {
				errs = append(errs, field.Invalid(at.Child("containerPort"), p.ContainerPort, message))
			}
		}
		if p.HostPort != 0 {
			for _, message := range validation.IsValidPortNum(int(p.HostPort)) {
				errs = append(errs, field.Invalid(at.Child("hostPort"), p.HostPort, message))
			}
		}
		if !sets.New(protocols...).Has(string(p.Protocol)) {
			errs = append(errs, field.NotSupported(at.Child("protocol"), p.Protocol, protocols))
		}
	}
	return errs
}

// validateResources: no negative quantity, and no request above its limit.
func validateResources(r corev1.ResourceRequirements, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, part := range []struct {
		name string
		list corev1.ResourceList
	}{{"limits", r.Limits}, {"requests", r.Requests}} {
		for name, q := range part.list {
			if q.Sign() < 0 {
				errs = append(errs, field.Invalid(path.Child(part.name).Key(string(name)), q.String(), "must be greater than or equal to 0"))
			}
		}
	}
	for name, request := range r.Requests {
		limit, limited := r.Limits[name]
		if limited && request.Cmp(limit) > 0 {
			errs = append(errs, field.Invalid(path.Child("requests").Key(string(name)), request.String(),
				fmt.Sprintf("must be less than or equal to %s limit of %s", name, limit.String())))
		}
	}
	return errs
}

// validatePodUpdate: a pod's spec is immutable but for the fields kube-apiserver lets
// change (images, activeDeadlineSeconds, added tolerations).
func validatePodUpdate(obj, old runtime.Object) field.ErrorList {
	pod, oldPod := obj.(*corev1.Pod), old.(*corev1.Pod)
	errs := validatePod(pod)
	mutable := pod.Spec.DeepCopy()
	for i := range mutable.Containers {
		if i < len(oldPod.Spec.Containers) {
			mutable.Containers[i].Image = oldPod.Spec.Containers[i].Image
		}
	}
	for i := range mutable.InitContainers {
		if i < len(oldPod.Spec.InitContainers) {
			mutable.InitContainers[i].Image = oldPod.Spec.InitContainers[i].Image
		}
	}
	mutable.ActiveDeadlineSeconds = oldPod.Spec.ActiveDeadlineSeconds
	if len(mutable.Tolerations) >= len(oldPod.Spec.Tolerations) {
		mutable.Tolerations = oldPod.Spec.Tolerations
	}
	if oldPod.Spec.TerminationGracePeriodSeconds != nil && *oldPod.Spec.TerminationGracePeriodSeconds < 0 &&
		mutable.TerminationGracePeriodSeconds != nil && *mutable.TerminationGracePeriodSeconds == 1 {
		mutable.TerminationGracePeriodSeconds = oldPod.Spec.TerminationGracePeriodSeconds
	}
	if !apiequality.Semantic.DeepEqual(mutable, &oldPod.Spec) {
		errs = append(errs, field.Forbidden(field.NewPath("spec"), "pod updates may not change fields other than "+
			"`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"+
			"`spec.tolerations` (only additions to existing tolerations),"+
			"`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"))
	}
	return errs
}

// --- pods/binding -----------------------------------------------------------------------

// bindingREST is pods/binding: the scheduler's POST of a Binding assigns the pod to a node.
type bindingREST struct{ store *genericregistry.Store }

func (r *bindingREST) New() runtime.Object { return &corev1.Binding{} }
func (r *bindingREST) Destroy()            {}

func (r *bindingREST) Create(ctx context.Context, name string, obj runtime.Object,
	createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	binding := obj.(*corev1.Binding)
	if name != binding.Name {
		return nil, apierrors.NewBadRequest("name in URL does not match name in Binding object")
	}
	var errs field.ErrorList
	if binding.Target.Kind != "" && binding.Target.Kind != "Node" {
		errs = append(errs, field.NotSupported(field.NewPath("target", "kind"), binding.Target.Kind, []string{"Node", "<empty>"}))
	}
	if binding.Target.Name == "" {
		errs = append(errs, field.Required(field.NewPath("target", "name"), ""))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Binding").GroupKind(), binding.Name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, binding.DeepCopyObject()); err != nil {
			return nil, err
		}
	}
	if err := r.assign(ctx, binding, options); err != nil {
		return nil, err
	}
	return &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusCreated}, nil
}

// assign is kube-apiserver's assignPod: nodeName, the binding's annotations and the
// PodScheduled=True condition, in one guaranteed update.
func (r *bindingREST) assign(ctx context.Context, binding *corev1.Binding, options *metav1.CreateOptions) error {
	key, err := r.store.KeyFunc(ctx, binding.Name)
	if err != nil {
		return err
	}
	var preconditions *storage.Preconditions
	if binding.UID != "" {
		preconditions = &storage.Preconditions{UID: &binding.UID}
	}
	dryRun := len(options.DryRun) > 0
	return r.store.Storage.GuaranteedUpdate(ctx, key, &corev1.Pod{}, false, preconditions, storage.SimpleUpdate(func(obj runtime.Object) (runtime.Object, error) {
		pod := obj.(*corev1.Pod)
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(corev1.Resource("pods/binding"), pod.Name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", pod.Name))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(corev1.Resource("pods/binding"), pod.Name, fmt.Errorf("pod %v is already assigned to node %q", pod.Name, pod.Spec.NodeName))
		}
		pod.Spec.NodeName = binding.Target.Name
		for k, v := range binding.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		setPodCondition(&pod.Status, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, ObservedGeneration: pod.Generation})
		return pod, nil
	}), dryRun, nil)
}

// setPodCondition is podutil.UpdatePodCondition: the transition time changes with the
// status only.
func setPodCondition(status *corev1.PodStatus, condition corev1.PodCondition) {
	now := metav1.Now()
	for i, existing := range status.Conditions {
		if existing.Type != condition.Type {
			continue
		}
		condition.LastTransitionTime = existing.LastTransitionTime
		if existing.Status != condition.Status {
			condition.LastTransitionTime = now
		}
		status.Conditions[i] = condition
		return
	}
	condition.LastTransitionTime = now
	status.Conditions = append(status.Conditions, condition)
}
