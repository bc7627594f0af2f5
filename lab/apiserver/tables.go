package main

// Server-side Tables with kube-apiserver's columns (pkg/printers/internalversion), so that
// `kubectl get` prints here what it prints on a cluster.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// tableDefinition is a resource's columns and the cells of one object.
type tableDefinition struct {
	columns []metav1.TableColumnDefinition
	row     func(obj runtime.Object) []any
}

func (d *tableDefinition) ConvertToTable(_ context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	add := func(obj runtime.Object) error {
		table.Rows = append(table.Rows, metav1.TableRow{
			Cells:      d.row(obj),
			Conditions: rowConditions(obj),
			Object:     runtime.RawExtension{Object: obj},
		})
		return nil
	}
	if meta.IsListType(object) {
		if err := meta.EachListItem(object, add); err != nil {
			return nil, err
		}
	} else if err := add(object); err != nil {
		return nil, err
	}
	if m, err := meta.ListAccessor(object); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
		table.Continue = m.GetContinue()
		table.RemainingItemCount = m.GetRemainingItemCount()
	} else if m, err := meta.CommonAccessor(object); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
	}
	if options, ok := tableOptions.(*metav1.TableOptions); !ok || !options.NoHeaders {
		table.ColumnDefinitions = d.columns
	}
	return table, nil
}

// rowConditions marks finished pods Completed, as the pod printer does (kubectl get
// hides them with --show-all=false in old clients).
func rowConditions(obj runtime.Object) []metav1.TableRowCondition {
	if pod, ok := obj.(*corev1.Pod); ok {
		switch pod.Status.Phase {
		case corev1.PodSucceeded:
			return []metav1.TableRowCondition{{Type: metav1.RowCompleted, Status: metav1.ConditionTrue, Reason: string(pod.Status.Phase), Message: "The pod has completed successfully."}}
		case corev1.PodFailed:
			return []metav1.TableRowCondition{{Type: metav1.RowCompleted, Status: metav1.ConditionTrue, Reason: string(pod.Status.Phase), Message: "The pod failed."}}
		}
	}
	return nil
}

var objectMetaDoc = metav1.ObjectMeta{}.SwaggerDoc()

func nameColumn() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name", Description: objectMetaDoc["name"]}
}

func ageColumn() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Age", Type: "string", Description: objectMetaDoc["creationTimestamp"]}
}

func column(name, kind, description string, priority int32) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: kind, Description: description, Priority: priority}
}

// age is the printers' translateTimestampSince.
func age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

func orNone(value string) string {
	if value == "" {
		return "<none>"
	}
	return value
}

func orUnknown(value string) string {
	if value == "" {
		return "<unknown>"
	}
	return value
}

var podTable = &tableDefinition{
	columns: []metav1.TableColumnDefinition{
		nameColumn(),
		column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
		column("Status", "string", "The aggregate status of the containers in this pod.", 0),
		column("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
		ageColumn(),
		column("IP", "string", corev1.PodStatus{}.SwaggerDoc()["podIP"], 1),
		column("Node", "string", corev1.PodSpec{}.SwaggerDoc()["nodeName"], 1),
		column("Nominated Node", "string", corev1.PodStatus{}.SwaggerDoc()["nominatedNodeName"], 1),
		column("Readiness Gates", "string", corev1.PodSpec{}.SwaggerDoc()["readinessGates"], 1),
	},
	row: func(obj runtime.Object) []any { return podRow(obj.(*corev1.Pod)) },
}

// podRow is the pod printer's READY, STATUS and RESTARTS logic.
func podRow(pod *corev1.Pod) []any {
	restarts, restartableInitRestarts := 0, 0
	total := len(pod.Spec.Containers)
	ready := 0
	var lastRestart time.Time
	noteRestart := func(status corev1.ContainerStatus) {
		if t := status.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(lastRestart) {
			lastRestart = t.FinishedAt.Time
		}
	}
	reason := string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		reason = pod.Status.Reason
	}
	// Sidecars (restartable init containers) count as containers.
	sidecars := map[string]bool{}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars[c.Name] = true
			total++
		}
	}
	initializing := false
	for i, status := range pod.Status.InitContainerStatuses {
		restarts += int(status.RestartCount)
		noteRestart(status)
		if sidecars[status.Name] {
			restartableInitRestarts += int(status.RestartCount)
			if status.Started != nil && *status.Started {
				if status.Ready {
					ready++
				}
				continue
			}
		}
		switch {
		case status.State.Terminated != nil && status.State.Terminated.ExitCode == 0:
			continue
		case status.State.Terminated != nil:
			t := status.State.Terminated
			switch {
			case t.Reason != "":
				reason = "Init:" + t.Reason
			case t.Signal != 0:
				reason = fmt.Sprintf("Init:Signal:%d", t.Signal)
			default:
				reason = fmt.Sprintf("Init:ExitCode:%d", t.ExitCode)
			}
		case status.State.Waiting != nil && status.State.Waiting.Reason != "" && status.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + status.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers))
		}
		initializing = true
		break
	}
	if !initializing || podConditionTrue(pod, corev1.PodInitialized) {
		restarts = restartableInitRestarts
		hasRunning := false
		for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
			status := pod.Status.ContainerStatuses[i]
			restarts += int(status.RestartCount)
			noteRestart(status)
			switch {
			case status.State.Waiting != nil && status.State.Waiting.Reason != "":
				reason = status.State.Waiting.Reason
			case status.State.Terminated != nil && status.State.Terminated.Reason != "":
				reason = status.State.Terminated.Reason
			case status.State.Terminated != nil && status.State.Terminated.Signal != 0:
				reason = fmt.Sprintf("Signal:%d", status.State.Terminated.Signal)
			case status.State.Terminated != nil:
				reason = fmt.Sprintf("ExitCode:%d", status.State.Terminated.ExitCode)
			case status.Ready && status.State.Running != nil:
				hasRunning = true
				ready++
			}
		}
		// A pod whose containers completed but that still runs one is Running (or
		// NotReady), not Completed.
		if reason == "Completed" && hasRunning {
			if podConditionTrue(pod, corev1.PodReady) {
				reason = "Running"
			} else {
				reason = "NotReady"
			}
		}
	}
	if pod.DeletionTimestamp != nil && pod.Status.Reason == "NodeLost" {
		reason = "Unknown"
	} else if pod.DeletionTimestamp != nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		reason = "Terminating"
	}
	restartsText := fmt.Sprint(restarts)
	if restarts != 0 && !lastRestart.IsZero() {
		restartsText = fmt.Sprintf("%d (%s ago)", restarts, age(metav1.NewTime(lastRestart)))
	}
	podIP := ""
	if len(pod.Status.PodIPs) > 0 {
		podIP = pod.Status.PodIPs[0].IP
	}
	gates := "<none>"
	if len(pod.Spec.ReadinessGates) > 0 {
		met := 0
		for _, gate := range pod.Spec.ReadinessGates {
			if podConditionTrue(pod, gate.ConditionType) {
				met++
			}
		}
		gates = fmt.Sprintf("%d/%d", met, len(pod.Spec.ReadinessGates))
	}
	return []any{pod.Name, fmt.Sprintf("%d/%d", ready, total), reason, restartsText, age(pod.CreationTimestamp),
		orNone(podIP), orNone(pod.Spec.NodeName), orNone(pod.Status.NominatedNodeName), gates}
}

func podConditionTrue(pod *corev1.Pod, kind corev1.PodConditionType) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == kind {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

var nodeTable = &tableDefinition{
	columns: []metav1.TableColumnDefinition{
		nameColumn(),
		column("Status", "string", "The status of the node", 0),
		column("Roles", "string", "The roles of the node", 0),
		ageColumn(),
		column("Version", "string", corev1.NodeSystemInfo{}.SwaggerDoc()["kubeletVersion"], 0),
		column("Internal-IP", "string", corev1.NodeStatus{}.SwaggerDoc()["addresses"], 1),
		column("External-IP", "string", corev1.NodeStatus{}.SwaggerDoc()["addresses"], 1),
		column("OS-Image", "string", corev1.NodeSystemInfo{}.SwaggerDoc()["osImage"], 1),
		column("Kernel-Version", "string", corev1.NodeSystemInfo{}.SwaggerDoc()["kernelVersion"], 1),
		column("Container-Runtime", "string", corev1.NodeSystemInfo{}.SwaggerDoc()["containerRuntimeVersion"], 1),
	},
	row: func(obj runtime.Object) []any {
		node := obj.(*corev1.Node)
		var status []string
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					status = append(status, string(c.Type))
				} else {
					status = append(status, "Not"+string(c.Type))
				}
			}
		}
		if len(status) == 0 {
			status = append(status, "Unknown")
		}
		if node.Spec.Unschedulable {
			status = append(status, "SchedulingDisabled")
		}
		info := node.Status.NodeInfo
		return []any{node.Name, strings.Join(status, ","), orNone(strings.Join(nodeRoles(node), ",")),
			age(node.CreationTimestamp), info.KubeletVersion,
			nodeAddress(node, corev1.NodeInternalIP), nodeAddress(node, corev1.NodeExternalIP),
			orUnknown(info.OSImage), orUnknown(info.KernelVersion), orUnknown(info.ContainerRuntimeVersion)}
	},
}

// nodeRoles are the node-role.kubernetes.io/<role> and kubernetes.io/role labels.
func nodeRoles(node *corev1.Node) []string {
	roles := map[string]bool{}
	for key, value := range node.Labels {
		switch {
		case strings.HasPrefix(key, "node-role.kubernetes.io/"):
			if role := strings.TrimPrefix(key, "node-role.kubernetes.io/"); role != "" {
				roles[role] = true
			}
		case key == "kubernetes.io/role" && value != "":
			roles[value] = true
		}
	}
	list := make([]string, 0, len(roles))
	for role := range roles {
		list = append(list, role)
	}
	sort.Strings(list)
	return list
}

func nodeAddress(node *corev1.Node, kind corev1.NodeAddressType) string {
	for _, address := range node.Status.Addresses {
		if address.Type == kind {
			return address.Address
		}
	}
	return "<none>"
}

var secretTable = &tableDefinition{
	columns: []metav1.TableColumnDefinition{
		nameColumn(),
		column("Type", "string", corev1.Secret{}.SwaggerDoc()["type"], 0),
		column("Data", "string", corev1.Secret{}.SwaggerDoc()["data"], 0),
		ageColumn(),
	},
	row: func(obj runtime.Object) []any {
		s := obj.(*corev1.Secret)
		return []any{s.Name, string(s.Type), int64(len(s.Data)), age(s.CreationTimestamp)}
	},
}

var configMapTable = &tableDefinition{
	columns: []metav1.TableColumnDefinition{
		nameColumn(),
		column("Data", "string", corev1.ConfigMap{}.SwaggerDoc()["data"], 0),
		ageColumn(),
	},
	row: func(obj runtime.Object) []any {
		c := obj.(*corev1.ConfigMap)
		return []any{c.Name, int64(len(c.Data) + len(c.BinaryData)), age(c.CreationTimestamp)}
	},
}

var serviceAccountTable = &tableDefinition{
	columns: []metav1.TableColumnDefinition{
		nameColumn(),
		column("Secrets", "string", corev1.ServiceAccount{}.SwaggerDoc()["secrets"], 0),
		ageColumn(),
	},
	row: func(obj runtime.Object) []any {
		a := obj.(*corev1.ServiceAccount)
		return []any{a.Name, int64(len(a.Secrets)), age(a.CreationTimestamp)}
	},
}

var eventTable = &tableDefinition{
	columns: []metav1.TableColumnDefinition{
		column("Last Seen", "string", corev1.Event{}.SwaggerDoc()["lastTimestamp"], 0),
		column("Type", "string", corev1.Event{}.SwaggerDoc()["type"], 0),
		column("Reason", "string", corev1.Event{}.SwaggerDoc()["reason"], 0),
		column("Object", "string", corev1.Event{}.SwaggerDoc()["involvedObject"], 0),
		column("Subobject", "string", corev1.ObjectReference{}.SwaggerDoc()["fieldPath"], 1),
		column("Source", "string", corev1.Event{}.SwaggerDoc()["source"], 1),
		column("Message", "string", corev1.Event{}.SwaggerDoc()["message"], 0),
		column("First Seen", "string", corev1.Event{}.SwaggerDoc()["firstTimestamp"], 1),
		column("Count", "string", corev1.Event{}.SwaggerDoc()["count"], 1),
		{Name: "Name", Type: "string", Format: "name", Priority: 1, Description: objectMetaDoc["name"]},
	},
	row: func(obj runtime.Object) []any {
		e := obj.(*corev1.Event)
		first := age(e.FirstTimestamp)
		if e.FirstTimestamp.IsZero() {
			first = microAge(e.EventTime)
		}
		last := age(e.LastTimestamp)
		if e.LastTimestamp.IsZero() {
			last = first
		}
		count := e.Count
		if e.Series != nil {
			last, count = microAge(e.Series.LastObservedTime), e.Series.Count
		} else if count == 0 {
			count = 1 // a singleton event of the events.k8s.io API
		}
		target := strings.ToLower(e.InvolvedObject.Kind)
		if e.InvolvedObject.Name != "" {
			target += "/" + e.InvolvedObject.Name
		}
		source := e.Source.Component
		if source == "" {
			source = e.ReportingController
		}
		if host := e.Source.Host; host != "" {
			source += ", " + host
		} else if e.ReportingInstance != "" {
			source += ", " + e.ReportingInstance
		}
		return []any{last, e.Type, e.Reason, target, e.InvolvedObject.FieldPath, source,
			strings.TrimSpace(e.Message), first, int64(count), e.Name}
	},
}

func microAge(t metav1.MicroTime) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

var namespaceTable = &tableDefinition{
	columns: []metav1.TableColumnDefinition{
		nameColumn(),
		column("Status", "string", "The status of the namespace", 0),
		ageColumn(),
	},
	row: func(obj runtime.Object) []any {
		n := obj.(*corev1.Namespace)
		return []any{n.Name, string(n.Status.Phase), age(n.CreationTimestamp)}
	},
}

// containersAndImages are the wide columns CONTAINERS and IMAGES of workloads.
func containersAndImages(containers []corev1.Container) (string, string) {
	names := make([]string, len(containers))
	images := make([]string, len(containers))
	for i, c := range containers {
		names[i], images[i] = c.Name, c.Image
	}
	return strings.Join(names, ","), strings.Join(images, ",")
}

func selectorText(selector *metav1.LabelSelector) string {
	parsed, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return "<invalid>"
	}
	return parsed.String()
}

var workloadWideColumns = []metav1.TableColumnDefinition{
	column("Containers", "string", "Names of each container in the template.", 1),
	column("Images", "string", "Images referenced by each container in the template.", 1),
}

var deploymentTable = &tableDefinition{
	columns: append([]metav1.TableColumnDefinition{
		nameColumn(),
		column("Ready", "string", "Number of the pod with ready state", 0),
		column("Up-to-date", "string", appsv1.DeploymentStatus{}.SwaggerDoc()["updatedReplicas"], 0),
		column("Available", "string", appsv1.DeploymentStatus{}.SwaggerDoc()["availableReplicas"], 0),
		ageColumn(),
	}, append(workloadWideColumns, column("Selector", "string", appsv1.DeploymentSpec{}.SwaggerDoc()["selector"], 1))...),
	row: func(obj runtime.Object) []any {
		d := obj.(*appsv1.Deployment)
		desired := int32(0)
		if d.Spec.Replicas != nil {
			desired = *d.Spec.Replicas
		}
		names, images := containersAndImages(d.Spec.Template.Spec.Containers)
		return []any{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, desired), int64(d.Status.UpdatedReplicas),
			int64(d.Status.AvailableReplicas), age(d.CreationTimestamp), names, images, selectorText(d.Spec.Selector)}
	},
}

var replicaSetTable = &tableDefinition{
	columns: append([]metav1.TableColumnDefinition{
		nameColumn(),
		column("Desired", "integer", appsv1.ReplicaSetSpec{}.SwaggerDoc()["replicas"], 0),
		column("Current", "integer", appsv1.ReplicaSetStatus{}.SwaggerDoc()["replicas"], 0),
		column("Ready", "integer", appsv1.ReplicaSetStatus{}.SwaggerDoc()["readyReplicas"], 0),
		ageColumn(),
	}, append(workloadWideColumns, column("Selector", "string", appsv1.ReplicaSetSpec{}.SwaggerDoc()["selector"], 1))...),
	row: func(obj runtime.Object) []any {
		r := obj.(*appsv1.ReplicaSet)
		desired := int32(0)
		if r.Spec.Replicas != nil {
			desired = *r.Spec.Replicas
		}
		names, images := containersAndImages(r.Spec.Template.Spec.Containers)
		return []any{r.Name, int64(desired), int64(r.Status.Replicas), int64(r.Status.ReadyReplicas),
			age(r.CreationTimestamp), names, images, selectorText(r.Spec.Selector)}
	},
}

var hpaTable = &tableDefinition{
	columns: []metav1.TableColumnDefinition{
		nameColumn(),
		column("Reference", "string", autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["scaleTargetRef"], 0),
		column("Targets", "string", autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["metrics"], 0),
		column("MinPods", "string", autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["minReplicas"], 0),
		column("MaxPods", "integer", autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["maxReplicas"], 0),
		column("Replicas", "integer", autoscalingv2.HorizontalPodAutoscalerStatus{}.SwaggerDoc()["currentReplicas"], 0),
		ageColumn(),
	},
	row: func(obj runtime.Object) []any {
		h := obj.(*autoscalingv2.HorizontalPodAutoscaler)
		minPods := "<unset>"
		if h.Spec.MinReplicas != nil {
			minPods = fmt.Sprint(*h.Spec.MinReplicas)
		}
		reference := h.Spec.ScaleTargetRef.Kind + "/" + h.Spec.ScaleTargetRef.Name
		return []any{h.Name, reference, hpaTargets(h.Spec.Metrics, h.Status.CurrentMetrics), minPods,
			int64(h.Spec.MaxReplicas), int64(h.Status.CurrentReplicas), age(h.CreationTimestamp)}
	},
}

// hpaTargets is the printer's TARGETS: "cpu: 40%/80%", at most two, then "+ N more...".
func hpaTargets(specs []autoscalingv2.MetricSpec, statuses []autoscalingv2.MetricStatus) string {
	if len(specs) == 0 {
		return "<none>"
	}
	var list []string
	for i, spec := range specs {
		var status *autoscalingv2.MetricStatus
		if i < len(statuses) {
			status = &statuses[i]
		}
		list = append(list, hpaTarget(spec, status))
	}
	const shown = 2
	if len(list) > shown {
		return fmt.Sprintf("%s + %d more...", strings.Join(list[:shown], ", "), len(list)-shown)
	}
	return strings.Join(list, ", ")
}

func hpaTarget(spec autoscalingv2.MetricSpec, status *autoscalingv2.MetricStatus) string {
	const unknown = "<unknown>"
	current := unknown
	switch spec.Type {
	case autoscalingv2.ExternalMetricSourceType:
		if spec.External.Target.AverageValue != nil {
			if status != nil && status.External != nil && status.External.Current.AverageValue != nil {
				current = status.External.Current.AverageValue.String()
			}
			return fmt.Sprintf("%s/%s (avg)", current, spec.External.Target.AverageValue.String())
		}
		if status != nil && status.External != nil && status.External.Current.Value != nil {
			current = status.External.Current.Value.String()
		}
		return fmt.Sprintf("%s/%s", current, spec.External.Target.Value.String())
	case autoscalingv2.PodsMetricSourceType:
		if status != nil && status.Pods != nil && status.Pods.Current.AverageValue != nil {
			current = status.Pods.Current.AverageValue.String()
		}
		return fmt.Sprintf("%s/%s", current, spec.Pods.Target.AverageValue.String())
	case autoscalingv2.ObjectMetricSourceType:
		if spec.Object.Target.AverageValue != nil {
			if status != nil && status.Object != nil && status.Object.Current.AverageValue != nil {
				current = status.Object.Current.AverageValue.String()
			}
			return fmt.Sprintf("%s/%s (avg)", current, spec.Object.Target.AverageValue.String())
		}
		if status != nil && status.Object != nil && status.Object.Current.Value != nil {
			current = status.Object.Current.Value.String()
		}
		return fmt.Sprintf("%s/%s", current, spec.Object.Target.Value.String())
	case autoscalingv2.ResourceMetricSourceType:
		var now *autoscalingv2.MetricValueStatus
		if status != nil && status.Resource != nil {
			now = &status.Resource.Current
		}
		return string(spec.Resource.Name) + ": " + resourceTarget(spec.Resource.Target, now)
	case autoscalingv2.ContainerResourceMetricSourceType:
		var now *autoscalingv2.MetricValueStatus
		if status != nil && status.ContainerResource != nil {
			now = &status.ContainerResource.Current
		}
		return string(spec.ContainerResource.Name) + ": " + resourceTarget(spec.ContainerResource.Target, now)
	}
	return "<unknown type>"
}

func resourceTarget(target autoscalingv2.MetricTarget, now *autoscalingv2.MetricValueStatus) string {
	current := "<unknown>"
	if target.AverageValue != nil {
		if now != nil && now.AverageValue != nil {
			current = now.AverageValue.String()
		}
		return fmt.Sprintf("%s/%s", current, target.AverageValue.String())
	}
	if now != nil && now.AverageUtilization != nil {
		current = fmt.Sprintf("%d%%", *now.AverageUtilization)
	}
	wanted := "<auto>"
	if target.AverageUtilization != nil {
		wanted = fmt.Sprintf("%d%%", *target.AverageUtilization)
	}
	return fmt.Sprintf("%s/%s", current, wanted)
}

// The Metrics API's Tables, as metrics-server's: CPU and memory of a node, or the sum
// over a pod's containers, and the window they were measured over.
var metricsColumns = []metav1.TableColumnDefinition{
	nameColumn(),
	column("CPU", "string", "Amount of CPU used", 0),
	column("Memory", "string", "Amount of memory used", 0),
	column("Window", "string", "Time window of the measurement", 0),
}

var nodeMetricsTable = &tableDefinition{
	columns: metricsColumns,
	row: func(obj runtime.Object) []any {
		m := obj.(*metricsv1beta1.NodeMetrics)
		return []any{m.Name, m.Usage.Cpu().String(), m.Usage.Memory().String(), m.Window.Duration.String()}
	},
}

var podMetricsTable = &tableDefinition{
	columns: metricsColumns,
	row: func(obj runtime.Object) []any {
		m := obj.(*metricsv1beta1.PodMetrics)
		usage := corev1.ResourceList{}
		for _, c := range m.Containers {
			for name, q := range c.Usage {
				total := usage[name]
				total.Add(q)
				usage[name] = total
			}
		}
		return []any{m.Name, usage.Cpu().String(), usage.Memory().String(), m.Window.Duration.String()}
	},
}
