package main

// The generic registry every built-in resource of the lab goes through: one resourceType
// per resource says what kube-apiserver's own strategy for it does (reset fields on
// create, generation, validation, graceful deletion, subresources, Table columns), and
// installGroup serves it from etcd with k8s.io/apiserver's generic store.

import (
	"context"
	"fmt"
	"reflect"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// All served types, each external version registered also as its own internal version:
// the generic registry converts to an internal version, and for plain storage that is the
// external type itself (autoscaling/v1 is converted to v2, see autoscaling.go).
var (
	labScheme = runtime.NewScheme()
	labCodecs = serializer.NewCodecFactory(labScheme)
)

// resourceType is one resource as kube-apiserver's registry treats it.
type resourceType struct {
	gv               schema.GroupVersion
	plural, singular string
	shortNames       []string
	categories       []string
	namespaced       bool
	newObject        func() runtime.Object
	newList          func() runtime.Object
	fields           func(runtime.Object) fields.Set // beyond metadata.name/namespace
	// prepareCreate resets what a client may not set (status, generation).
	prepareCreate func(obj runtime.Object)
	// prepareUpdate runs after the status was kept: generation.
	prepareUpdate func(obj, old runtime.Object)
	// prepareStatusUpdate runs after /status kept the spec (what a status may not drop).
	prepareStatusUpdate func(obj, old runtime.Object)
	validate            func(obj runtime.Object) field.ErrorList
	validateUpdate      func(obj, old runtime.Object) field.ErrorList
	// nameValidation is the metadata.name rule (nil: DNS subdomain, as most resources).
	nameValidation apimachineryvalidation.ValidateNameFunc
	statusField    string // the struct field /status may change ("" = no /status)
	// graceful, when set, is the strategy's CheckGracefulDelete.
	graceful func(obj runtime.Object, options *metav1.DeleteOptions) bool
	table    *tableDefinition
	// subresources beyond /status, built on the resource's store.
	subresources func(store *genericregistry.Store) map[string]rest.Storage
	// notFound, when set, is the resource's own NotFound error (the Metrics API's).
	notFound func(ctx context.Context, name string) error
}

func (t resourceType) kind() string { return reflect.TypeOf(t.newObject()).Elem().Name() }

func (t resourceType) groupResource() schema.GroupResource {
	return schema.GroupResource{Group: t.gv.Group, Resource: t.plural}
}

// register adds the type, as external and internal version, with its field selectors.
func (t resourceType) register(scheme *runtime.Scheme) {
	scheme.AddKnownTypes(t.gv, t.newObject(), t.newList())
	internal := schema.GroupVersion{Group: t.gv.Group, Version: runtime.APIVersionInternal}
	scheme.AddKnownTypes(internal, t.newObject(), t.newList())
	// Lists and watches may select on these fields (kubectl describe reads events by
	// involvedObject, a kubelet its pods by spec.nodeName).
	selectable := t.attrsFields(t.newObject())
	utilruntime.Must(scheme.AddFieldLabelConversionFunc(t.gv.WithKind(t.kind()), func(label, value string) (string, string, error) {
		if _, ok := selectable[label]; ok {
			return label, value, nil
		}
		return "", "", fmt.Errorf("field label not supported: %s", label)
	}))
}

func (t resourceType) attrsFields(obj runtime.Object) fields.Set {
	set := fields.Set{}
	if t.fields != nil {
		set = t.fields(obj)
	}
	m, err := meta.Accessor(obj)
	if err == nil {
		set["metadata.name"] = m.GetName()
		if t.namespaced {
			set["metadata.namespace"] = m.GetNamespace()
		}
	}
	return set
}

// attrs are the labels and fields a list or watch may select on.
func (t resourceType) attrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil, err
	}
	return labels.Set(m.GetLabels()), t.attrsFields(obj), nil
}

// installGroup serves the types of one group version through the generic registry.
func installGroup(server *genericapiserver.GenericAPIServer, getter generic.RESTOptionsGetter,
	parameterCodec runtime.ParameterCodec, types []resourceType, legacy bool) error {
	gv := types[0].gv
	group := genericapiserver.NewDefaultAPIGroupInfo(gv.Group, labScheme, parameterCodec, labCodecs)
	// The served version is the preferred one (autoscaling/v1 is registered for Scale only).
	group.PrioritizedVersions = []schema.GroupVersion{gv}
	resources, err := storageFor(getter, types)
	if err != nil {
		return err
	}
	group.VersionedResourcesStorageMap[gv.Version] = resources
	if legacy {
		return server.InstallLegacyAPIGroup(genericapiserver.DefaultLegacyAPIPrefix, &group)
	}
	return server.InstallAPIGroup(&group)
}

// storageFor makes the stores of a list of types, and their subresources.
func storageFor(getter generic.RESTOptionsGetter, types []resourceType) (map[string]rest.Storage, error) {
	resources := map[string]rest.Storage{}
	for _, t := range types {
		store := &genericregistry.Store{
			NewFunc:                   t.newObject,
			NewListFunc:               t.newList,
			DefaultQualifiedResource:  t.groupResource(),
			SingularQualifiedResource: schema.GroupResource{Group: t.gv.Group, Resource: t.singular},
			CreateStrategy:            strategy{labScheme, t, false},
			UpdateStrategy:            strategy{labScheme, t, false},
			DeleteStrategy:            strategy{labScheme, t, false},
			ResetFieldsStrategy:       strategy{labScheme, t, false},
			TableConvertor:            t.tableConvertor(),
		}
		if t.graceful != nil {
			store.DeleteStrategy = gracefulStrategy{strategy{labScheme, t, false}}
		}
		if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: getter, AttrFunc: t.attrs}); err != nil {
			return nil, err
		}
		resources[t.plural] = &namedStore{store, t.shortNames, t.categories, t.notFound}
		if t.statusField != "" {
			status := *store
			status.CreateStrategy = nil
			status.DeleteStrategy = nil
			status.UpdateStrategy = strategy{labScheme, t, true}
			status.ResetFieldsStrategy = strategy{labScheme, t, true}
			resources[t.plural+"/status"] = &statusREST{&status}
		}
		if t.subresources != nil {
			for name, storage := range t.subresources(store) {
				resources[t.plural+"/"+name] = storage
			}
		}
	}
	return resources, nil
}

func (t resourceType) tableConvertor() rest.TableConvertor {
	if t.table == nil {
		return rest.NewDefaultTableConvertor(t.groupResource())
	}
	return t.table
}

// namedStore adds the short names and categories kubectl resolves (po, deploy, all).
type namedStore struct {
	*genericregistry.Store
	shortNames []string
	categories []string
	notFound   func(ctx context.Context, name string) error
}

func (s *namedStore) ShortNames() []string { return s.shortNames }
func (s *namedStore) Categories() []string { return s.categories }

func (s *namedStore) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	obj, err := s.Store.Get(ctx, name, options)
	if s.notFound != nil && apierrors.IsNotFound(err) {
		return nil, s.notFound(ctx, name)
	}
	return obj, err
}

// strategy is a resourceType's create, update and delete strategy; status says it is the
// one of the /status subresource (which changes the status only).
type strategy struct {
	runtime.ObjectTyper
	t      resourceType
	status bool
}

func (s strategy) GenerateName(base string) string {
	return names.SimpleNameGenerator.GenerateName(base)
}
func (s strategy) NamespaceScoped() bool { return s.t.namespaced }
func (s strategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	if s.t.prepareCreate != nil {
		s.t.prepareCreate(obj)
	}
}
func (s strategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	switch {
	case s.status:
		keepField(obj, old, "Spec")
		// As kube-apiserver's status strategies: owner references stay (garbage
		// collection relies on them).
		mustMeta(obj).SetOwnerReferences(mustMeta(old).GetOwnerReferences())
		if s.t.prepareStatusUpdate != nil {
			s.t.prepareStatusUpdate(obj, old)
		}
		return
	case s.t.statusField != "":
		keepField(obj, old, s.t.statusField)
	}
	if s.t.prepareUpdate != nil {
		s.t.prepareUpdate(obj, old)
	}
}
func (s strategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	errs := s.validateName(obj)
	if s.t.validate != nil {
		errs = append(errs, s.t.validate(obj)...)
	}
	return errs
}

// validateName applies the resource's own name rule (the generic registry checks only
// that a name is a valid path segment).
func (s strategy) validateName(obj runtime.Object) field.ErrorList {
	m := mustMeta(obj)
	if m.GetName() == "" {
		return nil // generateName, or the registry's own "name or generateName is required"
	}
	rule := s.t.nameValidation
	if rule == nil {
		rule = apimachineryvalidation.NameIsDNSSubdomain
	}
	var errs field.ErrorList
	for _, message := range rule(m.GetName(), false) {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), m.GetName(), message))
	}
	return errs
}
func (s strategy) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	if s.status || s.t.validateUpdate == nil {
		return nil
	}
	return s.t.validateUpdate(obj, old)
}

// GetResetFields are the fields server-side apply leaves to the other endpoint: the
// status for the main resource, the spec for /status.
func (s strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	if s.t.statusField == "" {
		return nil
	}
	reset := fieldpath.NewSet(fieldpath.MakePathOrDie("status"))
	if s.status {
		reset = fieldpath.NewSet(fieldpath.MakePathOrDie("spec"), fieldpath.MakePathOrDie("metadata", "ownerReferences"))
	}
	return map[fieldpath.APIVersion]*fieldpath.Set{fieldpath.APIVersion(s.t.gv.String()): reset}
}

func (strategy) WarningsOnCreate(context.Context, runtime.Object) []string { return nil }
func (strategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}
func (strategy) Canonicalize(runtime.Object)    {}
func (strategy) AllowCreateOnUpdate() bool      { return false }
func (strategy) AllowUnconditionalUpdate() bool { return true }

// gracefulStrategy deletes as its type's CheckGracefulDelete says (pods).
type gracefulStrategy struct{ strategy }

func (s gracefulStrategy) CheckGracefulDelete(_ context.Context, obj runtime.Object, options *metav1.DeleteOptions) bool {
	return s.t.graceful(obj, options)
}

func mustMeta(obj runtime.Object) metav1.Object {
	m, err := meta.Accessor(obj)
	utilruntime.Must(err)
	return m
}

// keepField copies one top-level struct field (Spec or Status) of old into obj.
func keepField(obj, old runtime.Object, name string) {
	kept := reflect.ValueOf(old.DeepCopyObject()).Elem().FieldByName(name)
	reflect.ValueOf(obj).Elem().FieldByName(name).Set(kept)
}

// specChanged says whether an update changed the spec: kube-apiserver bumps
// metadata.generation then.
func specChanged(obj, old runtime.Object) bool {
	return !apiequality.Semantic.DeepEqual(reflect.ValueOf(obj).Elem().FieldByName("Spec").Interface(),
		reflect.ValueOf(old).Elem().FieldByName("Spec").Interface())
}

// bumpGenerationOnSpecChange is the prepareUpdate of resources with metadata.generation.
func bumpGenerationOnSpecChange(obj, old runtime.Object) {
	m := mustMeta(obj)
	m.SetGeneration(mustMeta(old).GetGeneration())
	if specChanged(obj, old) {
		m.SetGeneration(m.GetGeneration() + 1)
	}
}

// resetStatus returns a prepareCreate that clears the status and starts generation at 1.
func resetStatus(then func(obj runtime.Object)) func(obj runtime.Object) {
	return func(obj runtime.Object) {
		status := reflect.ValueOf(obj).Elem().FieldByName("Status")
		status.Set(reflect.Zero(status.Type()))
		mustMeta(obj).SetGeneration(1)
		if then != nil {
			then(obj)
		}
	}
}

// statusREST is the /status subresource: get and update through the status strategy.
type statusREST struct{ store *genericregistry.Store }

func (r *statusREST) New() runtime.Object { return r.store.New() }
func (r *statusREST) Destroy()            {}
func (r *statusREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, options)
}
func (r *statusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo,
	createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc,
	_ bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}

// ConvertToTable lets `kubectl get <resource>/<name> --subresource=status` print as the
// main resource does.
func (r *statusREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return r.store.ConvertToTable(ctx, object, tableOptions)
}
