package main

// pods/log, served from the CRI log files the lab kubelet's containerd writes, laid out as
// the kubelet lays them out:
//
//	<pod-log-root>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log
//
// each line `<RFC3339Nano> <stdout|stderr> <F|P>[:tags] <text>`. The container is chosen
// and refused as kube-apiserver does (LogLocation), the log as the kubelet reads it
// (validateContainerLogStatus, then ReadLogs: tail by file lines, since, limitBytes,
// timestamps, follow until the container stops).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
)

// followPoll is how often a followed log is read again and its container's state looked at.
const followPoll = 200 * time.Millisecond

type podLogREST struct {
	store *genericregistry.Store
	root  string
}

func (r *podLogREST) New() runtime.Object { return &corev1.Pod{} }
func (r *podLogREST) Destroy()            {}

// ProducesMIMETypes and ProducesObject: the log is text, as kube-apiserver documents it.
func (r *podLogREST) ProducesMIMETypes(string) []string { return []string{"text/plain"} }
func (r *podLogREST) ProducesObject(string) any         { return "" }

func (r *podLogREST) NewGetOptions() (runtime.Object, bool, string) {
	return &corev1.PodLogOptions{}, false, ""
}

func (r *podLogREST) Get(ctx context.Context, name string, opts runtime.Object) (runtime.Object, error) {
	options, ok := opts.(*corev1.PodLogOptions)
	if !ok {
		return nil, fmt.Errorf("invalid options object: %#v", opts)
	}
	if errs := validateLogOptions(options); len(errs) > 0 {
		return nil, apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("PodLogOptions").GroupKind(), name, errs)
	}
	obj, err := r.store.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	pod := obj.(*corev1.Pod)
	container, err := logContainer(pod, options.Container)
	if err != nil {
		return nil, err
	}
	if pod.Spec.NodeName == "" {
		return &logStream{}, nil // not scheduled: kube-apiserver answers with no log at all
	}
	path, err := r.logFile(pod, container, options.Previous)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	stream := &logStream{path: path, options: *options, now: time.Now()}
	if options.Follow {
		stream.running = func(ctx context.Context) bool {
			// The stream's context is the request's, without the namespace a Get needs.
			return r.stillWriting(genericapirequest.WithNamespace(ctx, pod.Namespace), pod, container, path)
		}
	}
	return stream, nil
}

func validateLogOptions(o *corev1.PodLogOptions) field.ErrorList {
	var errs field.ErrorList
	if o.TailLines != nil && *o.TailLines < 0 {
		errs = append(errs, field.Invalid(field.NewPath("tailLines"), *o.TailLines, "must be greater than or equal to 0"))
	}
	if o.LimitBytes != nil && *o.LimitBytes < 1 {
		errs = append(errs, field.Invalid(field.NewPath("limitBytes"), *o.LimitBytes, "must be greater than 0"))
	}
	if o.SinceSeconds != nil && o.SinceTime != nil {
		errs = append(errs, field.Forbidden(field.NewPath(""), "at most one of `sinceTime` or `sinceSeconds` may be specified"))
	}
	if o.SinceSeconds != nil && *o.SinceSeconds < 1 {
		errs = append(errs, field.Invalid(field.NewPath("sinceSeconds"), *o.SinceSeconds, "must be greater than 0"))
	}
	return errs
}

// logContainer is LogLocation's choice: the one container, else the one named.
func logContainer(pod *corev1.Pod, name string) (string, error) {
	if name == "" {
		switch len(pod.Spec.Containers) {
		case 1:
			return pod.Spec.Containers[0].Name, nil
		case 0:
			return "", apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s", pod.Name))
		}
		message := fmt.Sprintf("a container name must be specified for pod %s, choose one of: [%s]", pod.Name, containerNames(pod.Spec.Containers))
		if len(pod.Spec.InitContainers) > 0 {
			message += fmt.Sprintf(" or one of the init containers: [%s]", containerNames(pod.Spec.InitContainers))
		}
		return "", apierrors.NewBadRequest(message)
	}
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range list {
			if c.Name == name {
				return name, nil
			}
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return name, nil
		}
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name))
}

func containerNames(containers []corev1.Container) string {
	names := make([]string, len(containers))
	for i, c := range containers {
		names[i] = c.Name
	}
	return strings.Join(names, " ")
}

func containerStatus(pod *corev1.Pod, name string) (corev1.ContainerStatus, bool) {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, s := range list {
			if s.Name == name {
				return s, true
			}
		}
	}
	return corev1.ContainerStatus{}, false
}

// logFile is the kubelet's validateContainerLogStatus, answered with the file of the
// container instance: the current one's <restartCount>.log while it runs or after it
// ended, the newest earlier one for --previous or while the next one waits.
func (r *podLogREST) logFile(pod *corev1.Pod, container string, previous bool) (string, error) {
	status, found := containerStatus(pod, container)
	if !found {
		return "", fmt.Errorf("container %q in pod %q is not available", container, pod.Name)
	}
	dir := filepath.Join(r.root, fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID), container)
	current := filepath.Join(dir, fmt.Sprintf("%d.log", status.RestartCount))
	last, lastState := status.LastTerminationState.Terminated, status.State
	switch {
	case previous:
		if last == nil || last.ContainerID == "" {
			return "", fmt.Errorf("previous terminated container %q in pod %q not found", container, pod.Name)
		}
		below := status.RestartCount
		if lastState.Running == nil && lastState.Terminated == nil {
			below++ // the next instance waits: the newest file is the previous one's
		}
		return newestLogBelow(dir, below)
	case lastState.Running != nil, lastState.Terminated != nil:
		return current, nil
	case last != nil:
		return newestLogBelow(dir, status.RestartCount+1)
	case lastState.Waiting != nil:
		switch reason := lastState.Waiting.Reason; reason {
		case "ErrImagePull":
			return "", fmt.Errorf("container %q in pod %q is waiting to start: image can't be pulled", container, pod.Name)
		case "ImagePullBackOff":
			return "", fmt.Errorf("container %q in pod %q is waiting to start: trying and failing to pull image", container, pod.Name)
		default:
			return "", fmt.Errorf("container %q in pod %q is waiting to start: %v", container, pod.Name, reason)
		}
	}
	return "", fmt.Errorf("container %q in pod %q is waiting to start - no logs yet", container, pod.Name)
}

// newestLogBelow is the <n>.log with the highest n under limit.
func newestLogBelow(dir string, limit int32) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("failed to try resolving symlinks in path %q: %v", dir, err)
	}
	var attempts []int
	for _, e := range entries {
		n, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".log"))
		if err == nil && strings.HasSuffix(e.Name(), ".log") && n < int(limit) {
			attempts = append(attempts, n)
		}
	}
	if len(attempts) == 0 {
		return "", fmt.Errorf("failed to try resolving symlinks in path %q: no earlier container log", dir)
	}
	sort.Ints(attempts)
	return filepath.Join(dir, fmt.Sprintf("%d.log", attempts[len(attempts)-1])), nil
}

// stillWriting says whether a followed log may still grow: its pod exists and the
// container instance of that file is running.
func (r *podLogREST) stillWriting(ctx context.Context, pod *corev1.Pod, container, path string) bool {
	obj, err := r.store.Get(ctx, pod.Name, &metav1.GetOptions{})
	if err != nil {
		return false
	}
	now := obj.(*corev1.Pod)
	if now.UID != pod.UID {
		return false
	}
	status, found := containerStatus(now, container)
	return found && status.State.Running != nil && filepath.Base(path) == fmt.Sprintf("%d.log", status.RestartCount)
}

// --- reading a CRI log --------------------------------------------------------------------

// criLine is one parsed line of a CRI log file.
type criLine struct {
	timestamp time.Time
	stream    string
	partial   bool
	content   []byte
}

// parseCRILine reads `<RFC3339Nano> <stream> <tag> <content>` (the kubelet's parseCRILog).
func parseCRILine(line []byte) (criLine, error) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	fields := bytes.SplitN(line, []byte(" "), 4)
	if len(fields) < 3 {
		return criLine{}, fmt.Errorf("unexpected CRI log line %q", line)
	}
	timestamp, err := time.Parse(time.RFC3339Nano, string(fields[0]))
	if err != nil {
		return criLine{}, fmt.Errorf("unexpected timestamp format %q: %v", fields[0], err)
	}
	stream := string(fields[1])
	if stream != "stdout" && stream != "stderr" {
		return criLine{}, fmt.Errorf("unexpected stream type %q", stream)
	}
	tags := strings.Split(string(fields[2]), ":")
	parsed := criLine{timestamp: timestamp, stream: stream, partial: tags[0] == "P"}
	if len(fields) == 4 {
		parsed.content = fields[3]
	}
	return parsed, nil
}

// logStream is the log of one container instance as text; an empty path is no log.
type logStream struct {
	path    string
	options corev1.PodLogOptions
	now     time.Time
	running func(context.Context) bool // set when following
}

// GetObjectKind and DeepCopyObject make the stream the object a Get returns.
func (s *logStream) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (s *logStream) DeepCopyObject() runtime.Object   { copied := *s; return &copied }

func (s *logStream) InputStream(ctx context.Context, _, _ string) (io.ReadCloser, bool, string, error) {
	if s.path == "" {
		return nil, false, "", nil
	}
	file, err := os.Open(s.path)
	if err != nil {
		return nil, false, "", apierrors.NewBadRequest(fmt.Sprintf("failed to try resolving symlinks in path %q: %v", s.path, err))
	}
	reader, writer := io.Pipe()
	go func() {
		defer file.Close()
		writer.CloseWithError(s.copy(ctx, file, writer))
	}()
	return reader, s.options.Follow, "text/plain", nil
}

// copy writes the log from its tail start on, then, when following, what is appended
// until the container stops or the client goes away.
func (s *logStream) copy(ctx context.Context, file *os.File, out io.Writer) error {
	if s.options.TailLines != nil {
		start, err := tailStart(file, *s.options.TailLines)
		if err != nil {
			return err
		}
		if _, err := file.Seek(start, io.SeekStart); err != nil {
			return err
		}
	}
	var since time.Time
	if s.options.SinceSeconds != nil {
		since = s.now.Add(-time.Duration(*s.options.SinceSeconds) * time.Second)
	} else if s.options.SinceTime != nil {
		since = s.options.SinceTime.Time
	}
	limit := int64(-1)
	if s.options.LimitBytes != nil {
		limit = *s.options.LimitBytes
	}
	w := &limitedWriter{out: out, left: limit}
	reader := bufio.NewReader(file)
	startOfLine := true
	var pending []byte
	for {
		chunk, err := reader.ReadBytes('\n')
		pending = append(pending, chunk...)
		if errors.Is(err, io.EOF) {
			if s.running == nil || !s.waitForMore(ctx) {
				return nil
			}
			continue
		}
		if err != nil {
			return err
		}
		line, perr := parseCRILine(pending)
		pending = pending[:0]
		if perr != nil || line.timestamp.Before(since) {
			continue // the kubelet skips what it cannot parse
		}
		if s.options.Timestamps && startOfLine {
			if _, err := w.Write([]byte(line.timestamp.Format(time.RFC3339Nano) + " ")); err != nil {
				return ignoreLimit(err)
			}
		}
		text := line.content
		if !line.partial {
			text = append(append([]byte{}, text...), '\n')
		}
		if _, err := w.Write(text); err != nil {
			return ignoreLimit(err)
		}
		startOfLine = !line.partial
	}
}

// waitForMore waits one poll period; false once the log can no longer grow.
func (s *logStream) waitForMore(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(followPoll):
	}
	return s.running(ctx)
}

// tailStart is the offset of the n-th line from the end (the kubelet's
// tail.FindTailLineStartIndex: file lines, a partial line counts as one).
func tailStart(file *os.File, n int64) (int64, error) {
	data, err := io.ReadAll(file)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return int64(len(data)), nil
	}
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	for i := end - 1; i >= 0; i-- {
		if data[i] == '\n' {
			n--
			if n == 0 {
				return int64(i + 1), nil
			}
		}
	}
	return 0, nil
}

var errLimitReached = errors.New("limitBytes reached")

// limitedWriter stops after limitBytes (left < 0: no limit).
type limitedWriter struct {
	out  io.Writer
	left int64
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	if w.left < 0 {
		return w.out.Write(p)
	}
	if int64(len(p)) > w.left {
		p = p[:w.left]
	}
	n, err := w.out.Write(p)
	w.left -= int64(n)
	if err == nil && w.left == 0 {
		err = errLimitReached
	}
	return n, err
}

func ignoreLimit(err error) error {
	if errors.Is(err, errLimitReached) {
		return nil
	}
	return err
}

// convertLogQuery is the query conversion kube-apiserver generates for PodLogOptions.
func convertLogQuery(in *url.Values, out *corev1.PodLogOptions, _ conversion.Scope) error {
	query := *in
	boolean := func(key string) (bool, error) {
		value := query.Get(key)
		if value == "" {
			return false, nil
		}
		return strconv.ParseBool(value)
	}
	integer := func(key string) (*int64, error) {
		if _, set := query[key]; !set {
			return nil, nil
		}
		value, err := strconv.ParseInt(query.Get(key), 10, 64)
		if err != nil {
			return nil, err
		}
		return &value, nil
	}
	var err error
	*out = corev1.PodLogOptions{Container: query.Get("container")}
	if out.Follow, err = boolean("follow"); err != nil {
		return err
	}
	if out.Previous, err = boolean("previous"); err != nil {
		return err
	}
	if out.Timestamps, err = boolean("timestamps"); err != nil {
		return err
	}
	if out.InsecureSkipTLSVerifyBackend, err = boolean("insecureSkipTLSVerifyBackend"); err != nil {
		return err
	}
	if out.SinceSeconds, err = integer("sinceSeconds"); err != nil {
		return err
	}
	if out.TailLines, err = integer("tailLines"); err != nil {
		return err
	}
	if out.LimitBytes, err = integer("limitBytes"); err != nil {
		return err
	}
	if value := query.Get("sinceTime"); value != "" {
		since, err := time.Parse(time.RFC3339, value)
		if err != nil {
			return err
		}
		out.SinceTime = &metav1.Time{Time: since}
	}
	if value := query.Get("stream"); value != "" {
		out.Stream = &value
	}
	return nil
}
