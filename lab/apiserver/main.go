// Command lab-apiserver is kernel-gossip's lab Kubernetes API server: Kubernetes' own API
// machinery (k8s.io/apiextensions-apiserver and the generic registry of k8s.io/apiserver)
// on etcd, for machines where no kube-apiserver can be installed.
//
// It serves CustomResourceDefinitions and their resources fully (structural schemas,
// pruning, status subresource, watch, OpenAPI), the built-in resources a lab cluster needs
// as kube-apiserver serves them (core/v1 namespaces, events, pods with binding, log and
// graceful deletion, nodes, secrets, configmaps, serviceaccounts; apps/v1 deployments and
// replicasets; autoscaling/v2 horizontalpodautoscalers; metrics.k8s.io/v1beta1 pods and
// nodes), and /api and /apis discovery.
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
	"sort"

	"github.com/spf13/pflag"
	noopoteltrace "go.opentelemetry.io/otel/trace/noop"

	apihelpers "k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	extensionsinformers "k8s.io/apiextensions-apiserver/pkg/client/informers/externalversions/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/endpoints/discovery"
	discoveryendpoint "k8s.io/apiserver/pkg/endpoints/discovery/aggregated"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
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
	flags.StringVar(&podLogRoot, "pod-log-root", "", "the directory of the kubelet's CRI pod log files (pods/log reads them)")
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
	if podLogRoot == "" {
		return fmt.Errorf("--pod-log-root is required: pods/log reads the CRI log files there")
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

	// Both servers add their groups to one aggregated /apis discovery.
	config.AggregatedDiscoveryGroupManager = discoveryendpoint.NewResourceManager("apis")

	// The built-in server shares everything but its types, storage and OpenAPI
	// definitions (generated at build time by openapi-gen: server-side apply needs them).
	coreConfig := *config
	coreConfig.PostStartHooks = map[string]genericapiserver.PostStartHookConfigEntry{}
	coreConfig.Serializer = labCodecs
	coreConfig.EnableDiscovery = false
	coreConfig.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(
		coreopenapi.GetOpenAPIDefinitions, openapinamer.NewDefinitionNamer(labScheme))
	core, err := coreConfig.Complete().New("lab-core", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return err
	}
	coreStorage := o.RecommendedOptions.Etcd.StorageConfig
	coreStorage.Prefix = "/registry"
	coreStorage.Codec = labCodecs.LegacyCodec(servedVersions...)
	coreStorage.StorageObjectCountTracker = config.StorageObjectCountTracker
	coreGetter := o.RecommendedOptions.Etcd.CreateRESTOptionsGetter(
		&genericoptions.SimpleStorageFactory{StorageConfig: coreStorage}, config.ResourceTransformers)

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
	// In a cluster kube-aggregator lists every group in /apis; here the extension server
	// lists the built-in server's groups too.
	core.DiscoveryGroupManager = server.GenericAPIServer.DiscoveryGroupManager
	if err := installBuiltins(core, coreGetter); err != nil {
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
