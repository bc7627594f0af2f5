// Command lab-apiserver is kernel-gossip's lab Kubernetes API server: Kubernetes' own API
// machinery (k8s.io/apiextensions-apiserver and the generic registry of k8s.io/apiserver)
// on etcd, for machines where no kube-apiserver can be installed.
//
// It serves CustomResourceDefinitions and their resources fully (structural schemas,
// pruning, status subresource, watch, OpenAPI), core/v1 namespaces, events and pods as
// plain storage, and /api and /apis discovery.
//
// LAB ONLY, NEVER EXPOSE IT: every request is an admin, and there is no admission, RBAC,
// garbage collection or namespace lifecycle. It listens on 127.0.0.1.
package main

import (
	"context"
	goflag "flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"

	"github.com/spf13/pflag"
	noopoteltrace "go.opentelemetry.io/otel/trace/noop"

	corev1 "k8s.io/api/core/v1"
	apihelpers "k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	extensionsinformers "k8s.io/apiextensions-apiserver/pkg/client/informers/externalversions/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/endpoints/discovery"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/storage/names"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"
	netutils "k8s.io/utils/net"

	// Generated into the build tree by openapi-gen from k8s.io/api/core/v1 (see apiserver.py).
	"kernel-gossip-lab/coreopenapi"
)

func main() {
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	// Delegated authn/authz and the core API would need a kube-apiserver; admission would
	// call webhooks. None exist here: authn/authz are replaced by "every request is an
	// admin" below, admission is off.
	o.RecommendedOptions.Authentication = nil
	o.RecommendedOptions.Authorization = nil
	o.RecommendedOptions.CoreAPI = nil
	o.RecommendedOptions.Admission = nil
	// Priority and fairness reads its configuration from the (absent) flowcontrol API.
	o.RecommendedOptions.Features.EnablePriorityAndFairness = false
	o.RecommendedOptions.SecureServing.BindAddress = netutils.ParseIPSloppy("127.0.0.1")

	flags := pflag.NewFlagSet("lab-apiserver", pflag.ExitOnError)
	o.AddFlags(flags)
	klog.InitFlags(nil)
	flags.AddGoFlagSet(goflag.CommandLine)
	utilruntime.Must(flags.Parse(os.Args[1:]))

	if err := run(genericapiserver.SetupSignalContext(), o); err != nil {
		klog.ErrorS(err, "lab-apiserver failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, o *options.CustomResourceDefinitionsServerOptions) error {
	if err := o.ServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	if err := o.Complete(); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	serving := o.RecommendedOptions.SecureServing
	if !serving.BindAddress.IsLoopback() {
		return fmt.Errorf("--bind-address %s: a lab server, where every request is an admin, listens on loopback only", serving.BindAddress)
	}
	localhost := []net.IP{netutils.ParseIPSloppy("127.0.0.1")}
	if err := serving.MaybeDefaultWithSelfSignedCerts("localhost", nil, localhost); err != nil {
		return err
	}
	if err := writeCA(serving.ServerCert); err != nil {
		return err
	}

	config := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	if err := o.ServerRunOptions.ApplyTo(&config.Config); err != nil {
		return err
	}
	if err := o.RecommendedOptions.ApplyTo(config); err != nil {
		return err
	}
	if err := o.APIEnablement.ApplyTo(&config.Config, apiserver.DefaultAPIResourceConfigSource(), apiserver.Scheme); err != nil {
		return err
	}
	config.Authentication.Authenticator = authenticator.RequestFunc(everyoneIsAdmin)
	config.Authorization.Authorizer = authorizerfactory.NewAlwaysAllowAuthorizer()

	// The core server shares everything but its types, storage and OpenAPI definitions
	// (generated at build time by openapi-gen: server-side apply needs them).
	coreConfig := *config
	coreConfig.PostStartHooks = map[string]genericapiserver.PostStartHookConfigEntry{}
	coreConfig.Serializer = coreCodecs
	coreConfig.EnableDiscovery = false
	coreConfig.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(
		coreopenapi.GetOpenAPIDefinitions, openapinamer.NewDefinitionNamer(coreScheme))
	core, err := coreConfig.Complete().New("lab-core", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return err
	}
	coreStorage := o.RecommendedOptions.Etcd.StorageConfig
	coreStorage.Prefix = "/registry"
	coreStorage.Codec = coreCodecs.LegacyCodec(corev1.SchemeGroupVersion)
	coreStorage.StorageObjectCountTracker = config.StorageObjectCountTracker
	coreGetter := o.RecommendedOptions.Etcd.CreateRESTOptionsGetter(
		&genericoptions.SimpleStorageFactory{StorageConfig: coreStorage}, config.ResourceTransformers)
	if err := installCore(core, coreGetter); err != nil {
		return err
	}

	definitions := openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions)
	namer := openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme)
	config.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(definitions, namer)
	config.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(definitions, namer)
	extensions := &apiserver.Config{
		GenericConfig: config,
		ExtraConfig: apiserver.ExtraConfig{
			CRDRESTOptionsGetter: options.NewCRDRESTOptionsGetter(*o.RecommendedOptions.Etcd, config.ResourceTransformers, config.StorageObjectCountTracker),
			ServiceResolver:      webhook.NewDefaultServiceResolver(),
			AuthResolverWrapper:  webhook.NewDefaultAuthenticationInfoResolverWrapper(nil, nil, config.LoopbackClientConfig, noopoteltrace.NewTracerProvider()),
		},
	}
	completed := extensions.Complete()
	// In a cluster kube-aggregator serves the /apis list; here the extension server does,
	// in front of the core server (which then serves /api and /api/v1).
	completed.GenericConfig.EnableDiscovery = true
	server, err := completed.New(core)
	if err != nil {
		return err
	}
	listCRDGroups(server.Informers.Apiextensions().V1().CustomResourceDefinitions(), server.GenericAPIServer.DiscoveryGroupManager)
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// everyoneIsAdmin authenticates every request as a cluster admin: a lab on 127.0.0.1.
func everyoneIsAdmin(*http.Request) (*authenticator.Response, bool, error) {
	admin := &user.DefaultInfo{Name: "lab-admin", Groups: []string{user.SystemPrivilegedGroup, user.AllAuthenticated}}
	return &authenticator.Response{User: admin}, true, nil
}

// writeCA saves the CA of a generated serving certificate (the last block of its chain) as
// ca.crt beside it, for kubeconfigs to trust.
func writeCA(serverCert genericoptions.GeneratableKeyCert) error {
	if serverCert.CertDirectory == "" {
		return nil
	}
	chain, err := cert.CertsFromFile(serverCert.CertKey.CertFile)
	if err != nil {
		return err
	}
	if len(chain) < 2 {
		return nil // a certificate given by the user: its CA is theirs
	}
	ca, err := cert.EncodeCertificates(chain[len(chain)-1])
	if err != nil {
		return err
	}
	return cert.WriteCert(filepath.Join(serverCert.CertDirectory, "ca.crt"), ca)
}

// listCRDGroups keeps the plain /apis group list (kopf and older clients read it) in step
// with the established CRDs; /apis/<group> and the aggregated /apis are the extension
// server's own.
func listCRDGroups(crds extensionsinformers.CustomResourceDefinitionInformer, groups discovery.GroupManager) {
	listed := map[string]bool{}
	sync := func() {
		all, err := crds.Lister().List(labels.Everything())
		if err != nil {
			utilruntime.HandleError(err)
			return
		}
		versions := map[string]map[string]bool{}
		for _, crd := range all {
			if !apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established) {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if v.Served {
					if versions[crd.Spec.Group] == nil {
						versions[crd.Spec.Group] = map[string]bool{}
					}
					versions[crd.Spec.Group][v.Name] = true
				}
			}
		}
		for group, served := range versions {
			var list []metav1.GroupVersionForDiscovery
			for v := range served {
				list = append(list, metav1.GroupVersionForDiscovery{GroupVersion: group + "/" + v, Version: v})
			}
			sort.Slice(list, func(i, j int) bool {
				return version.CompareKubeAwareVersionStrings(list[i].Version, list[j].Version) > 0
			})
			groups.AddGroup(metav1.APIGroup{Name: group, Versions: list, PreferredVersion: list[0]})
			listed[group] = true
		}
		for group := range listed {
			if versions[group] == nil {
				groups.RemoveGroup(group)
				delete(listed, group)
			}
		}
	}
	_, err := crds.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { sync() },
		UpdateFunc: func(any, any) { sync() },
		DeleteFunc: func(any) { sync() },
	})
	utilruntime.Must(err)
}

// The core/v1 types, registered also as their own internal version: the generic registry
// converts to an internal version, and for plain storage that is v1 itself.
var (
	coreScheme = runtime.NewScheme()
	coreCodecs = serializer.NewCodecFactory(coreScheme)
)

// coreType is one core/v1 resource stored as is, with the field selectors clients use.
type coreType struct {
	plural, singular string
	shortNames       []string
	namespaced       bool
	newObject        func() runtime.Object
	newList          func() runtime.Object
	fields           func(runtime.Object) fields.Set // beyond metadata.name/namespace
	onCreate         func(runtime.Object)            // what the real registry resets
	statusField      string                          // the struct field /status may change
}

var coreTypes = []coreType{
	{
		plural: "namespaces", singular: "namespace", shortNames: []string{"ns"},
		newObject: func() runtime.Object { return &corev1.Namespace{} },
		newList:   func() runtime.Object { return &corev1.NamespaceList{} },
		fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.phase": string(obj.(*corev1.Namespace).Status.Phase)}
		},
		onCreate: func(obj runtime.Object) {
			obj.(*corev1.Namespace).Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
		},
	},
	{
		plural: "events", singular: "event", shortNames: []string{"ev"}, namespaced: true,
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
	},
	{
		plural: "pods", singular: "pod", shortNames: []string{"po"}, namespaced: true,
		newObject: func() runtime.Object { return &corev1.Pod{} },
		newList:   func() runtime.Object { return &corev1.PodList{} },
		fields: func(obj runtime.Object) fields.Set {
			p := obj.(*corev1.Pod)
			return fields.Set{"spec.nodeName": p.Spec.NodeName, "status.phase": string(p.Status.Phase)}
		},
		onCreate: func(obj runtime.Object) {
			obj.(*corev1.Pod).Status = corev1.PodStatus{Phase: corev1.PodPending}
		},
		statusField: "Status",
	},
}

func init() {
	utilruntime.Must(corev1.AddToScheme(coreScheme))
	internal := schema.GroupVersion{Version: runtime.APIVersionInternal}
	for _, t := range coreTypes {
		coreScheme.AddKnownTypes(internal, t.newObject(), t.newList())
		// Lists and watches may select on these fields (kubectl describe reads events
		// by involvedObject, a kubelet its pods by spec.nodeName).
		selectable := t.fields(t.newObject())
		kind := corev1.SchemeGroupVersion.WithKind(reflect.TypeOf(t.newObject()).Elem().Name())
		utilruntime.Must(coreScheme.AddFieldLabelConversionFunc(kind, func(label, value string) (string, string, error) {
			if _, ok := selectable[label]; ok || label == "metadata.name" || label == "metadata.namespace" {
				return label, value, nil
			}
			return "", "", fmt.Errorf("field label not supported: %s", label)
		}))
	}
}

// installCore serves the core types under /api/v1 through the generic registry.
func installCore(server *genericapiserver.GenericAPIServer, getter generic.RESTOptionsGetter) error {
	group := genericapiserver.NewDefaultAPIGroupInfo("", coreScheme, metav1.ParameterCodec, coreCodecs)
	resources := map[string]rest.Storage{}
	for _, t := range coreTypes {
		store := &genericregistry.Store{
			NewFunc:                   t.newObject,
			NewListFunc:               t.newList,
			DefaultQualifiedResource:  corev1.Resource(t.plural),
			SingularQualifiedResource: corev1.Resource(t.singular),
			CreateStrategy:            plainStrategy{coreScheme, t, ""},
			UpdateStrategy:            plainStrategy{coreScheme, t, t.statusField},
			DeleteStrategy:            plainStrategy{coreScheme, t, ""},
			TableConvertor:            rest.NewDefaultTableConvertor(corev1.Resource(t.plural)),
		}
		if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: getter, AttrFunc: t.attrs}); err != nil {
			return err
		}
		resources[t.plural] = &namedStore{store, t.shortNames}
		if t.statusField != "" {
			status := *store
			status.CreateStrategy = nil
			status.DeleteStrategy = nil
			status.UpdateStrategy = statusStrategy{plainStrategy{coreScheme, t, t.statusField}}
			resources[t.plural+"/status"] = &statusREST{&status}
		}
	}
	group.VersionedResourcesStorageMap["v1"] = resources
	return server.InstallLegacyAPIGroup(genericapiserver.DefaultLegacyAPIPrefix, &group)
}

// attrs are the labels and fields a list or watch may select on.
func (t coreType) attrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil, err
	}
	set := t.fields(obj)
	set["metadata.name"] = m.GetName()
	if t.namespaced {
		set["metadata.namespace"] = m.GetNamespace()
	}
	return labels.Set(m.GetLabels()), set, nil
}

// namedStore adds the short names kubectl resolves (ns, ev, po).
type namedStore struct {
	*genericregistry.Store
	shortNames []string
}

func (s *namedStore) ShortNames() []string { return s.shortNames }

// plainStrategy stores objects as given: metadata is validated by the registry itself, the
// rest is plain storage. keep names the field an update of the main resource cannot change.
type plainStrategy struct {
	runtime.ObjectTyper
	t    coreType
	keep string
}

func (s plainStrategy) GenerateName(base string) string {
	return names.SimpleNameGenerator.GenerateName(base)
}
func (s plainStrategy) NamespaceScoped() bool { return s.t.namespaced }
func (s plainStrategy) PrepareForCreate(_ context.Context, obj runtime.Object) {
	if s.t.onCreate != nil {
		s.t.onCreate(obj)
	}
}
func (s plainStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	if s.keep != "" {
		keepField(obj, old, s.keep)
	}
}
func (plainStrategy) Validate(context.Context, runtime.Object) field.ErrorList { return nil }
func (plainStrategy) ValidateUpdate(context.Context, runtime.Object, runtime.Object) field.ErrorList {
	return nil
}
func (plainStrategy) WarningsOnCreate(context.Context, runtime.Object) []string { return nil }
func (plainStrategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}
func (plainStrategy) Canonicalize(runtime.Object)    {}
func (plainStrategy) AllowCreateOnUpdate() bool      { return false }
func (plainStrategy) AllowUnconditionalUpdate() bool { return true }

// statusStrategy lets /status change the status only: it keeps the old spec.
type statusStrategy struct{ plainStrategy }

func (s statusStrategy) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	keepField(obj, old, "Spec")
}

// keepField copies one top-level struct field (Spec or Status) of old into obj.
func keepField(obj, old runtime.Object, name string) {
	kept := reflect.ValueOf(old.DeepCopyObject()).Elem().FieldByName(name)
	reflect.ValueOf(obj).Elem().FieldByName(name).Set(kept)
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
