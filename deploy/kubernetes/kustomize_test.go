package kubernetes

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// (monitoring.coreos.com/v1) the base uses; its Go types are a heavy
// dependency. A field the base sets must be declared here to decode.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// kinds are the objects the manifests may hold, by apiVersion and kind.
var kinds = map[string]func() any{
	"v1/ConfigMap":                                    func() any { return &corev1.ConfigMap{} },
	"v1/PersistentVolumeClaim":                        func() any { return &corev1.PersistentVolumeClaim{} },
	"v1/Service":                                      func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                               func() any { return &corev1.ServiceAccount{} },
	"apps/v1/Deployment":                              func() any { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":                   func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":              func() any { return &networkingv1.NetworkPolicy{} },
	"rbac.authorization.k8s.io/v1/ClusterRole":        func() any { return &rbacv1.ClusterRole{} },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
	"monitoring.coreos.com/v1/ServiceMonitor":         func() any { return &serviceMonitor{} },
}

// clusterScoped are the kinds that have no namespace.
var clusterScoped = []string{"ClusterRole", "ClusterRoleBinding"}

// rendered is an overlay's output, decoded: objects by kind, then name.
type rendered map[string]map[string]any

// render runs kustomize on an overlay, as kubectl apply -k would, and decodes
// every object strictly: an unknown kind, an unknown or duplicate field, or a
// field of the wrong type fails the test.
func render(t *testing.T, dir string) rendered {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out := rendered{}
	for _, r := range resources.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		j, err := yaml.YAMLToJSONStrict(y)
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		key := r.GetApiVersion() + "/" + r.GetKind()
		newObject, ok := kinds[key]
		if !ok {
			t.Errorf("%s %s: not a kind the manifests may hold (add it to kinds if it is meant)", key, r.GetName())
			continue
		}
		obj := newObject()
		strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowUnknownFields)
		if err == nil {
			err = joinStrict(strict)
		}
		if err != nil {
			t.Errorf("%s %s: %v\n%s", key, r.GetName(), err, y)
			continue
		}
		ns := r.GetNamespace()
		if slices.Contains(clusterScoped, r.GetKind()) != (ns == "") {
			t.Errorf("%s %s: namespace %q", key, r.GetName(), ns)
		} else if ns != "" && ns != "berth" {
			t.Errorf("%s %s: namespace %q, want berth", key, r.GetName(), ns)
		}
		if out[r.GetKind()] == nil {
			out[r.GetKind()] = map[string]any{}
		}
		out[r.GetKind()][r.GetName()] = obj
	}
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// joinStrict is the strict decoding errors as one, or nil.
func joinStrict(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%v", errs)
}

// get returns the object of a kind and name, failing the test if there is none.
func get[T any](t *testing.T, objs rendered, kind, name string) T {
	t.Helper()
	obj, ok := objs[kind][name].(T)
	if !ok {
		t.Fatalf("no %s %s among %v", kind, name, objs.names())
	}
	return obj
}

func (objs rendered) names() []string {
	var names []string
	for kind, byName := range objs {
		for name := range byName {
			names = append(names, kind+"/"+name)
		}
	}
	slices.Sort(names)
	return names
}

// TestOverlays renders each overlay and checks what both must have, then what
// each is for.
func TestOverlays(t *testing.T) {
	for _, tc := range []struct {
		overlay string
		check   func(t *testing.T, objs rendered, d *appsv1.Deployment)
	}{
		{"single-node", checkSingleNode},
		{"ha", checkHA},
	} {
		t.Run(tc.overlay, func(t *testing.T) {
			objs := render(t, "overlays/"+tc.overlay)
			d := get[*appsv1.Deployment](t, objs, "Deployment", "berth")
			checkCommon(t, objs, d)
			tc.check(t, objs, d)
		})
	}
}

func checkCommon(t *testing.T, objs rendered, d *appsv1.Deployment) {
	pod := d.Spec.Template
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || selector.Empty() || !selector.Matches(labels.Set(pod.Labels)) {
		t.Errorf("the Deployment's selector %v (%v) does not select its pods %v", d.Spec.Selector, err, pod.Labels)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want berth alone", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	// Endpoints take a while to drop a terminating pod; Berth keeps serving
	// meanwhile, and the grace period covers that and the requests' end.
	if delay := configOf(t, objs, d)["drain-delay"]; delay != "10s" {
		t.Errorf("berth.yaml: drain-delay %v, want 10s", delay)
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || *g < 10+30 {
		t.Errorf("terminationGracePeriodSeconds %v: want at least drain-delay and shutdown-timeout, 40", g)
	}
	if !strings.HasPrefix(c.Image, "ghcr.io/berthhq/berth:") {
		t.Errorf("image %q: the base's images entry did not apply", c.Image)
	}
	if !slices.Equal(c.Args, []string{"serve", "--config", "/etc/berth/berth.yaml"}) {
		t.Errorf("args %q", c.Args)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != 5000 || ports["metrics"] != 5001 {
		t.Errorf("container ports %v, want http 5000 and metrics 5001", ports)
	}
	for name, probe := range map[string]struct {
		p    *corev1.Probe
		path string
	}{
		"startup": {c.StartupProbe, "/healthz"}, "liveness": {c.LivenessProbe, "/healthz"}, "readiness": {c.ReadinessProbe, "/readyz"},
	} {
		if probe.p == nil || probe.p.HTTPGet == nil || probe.p.HTTPGet.Path != probe.path || probe.p.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("%s probe %+v: want GET %s on port http", name, probe.p, probe.path)
		}
	}

	// The restricted Pod Security Standard, and a read-only root.
	psc, sc := pod.Spec.SecurityContext, c.SecurityContext
	switch {
	case psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot:
		t.Errorf("pod securityContext %+v: want runAsNonRoot", psc)
	case psc.RunAsUser == nil || *psc.RunAsUser != 65532 || psc.FSGroup == nil || *psc.FSGroup != 65532:
		t.Errorf("pod securityContext %+v: want user and fsGroup 65532, the image's", psc)
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("pod securityContext %+v: want the RuntimeDefault seccomp profile", psc)
	}
	switch {
	case sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("container securityContext %+v: want readOnlyRootFilesystem", sc)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("container securityContext %+v: want allowPrivilegeEscalation false", sc)
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("container securityContext %+v: want every capability dropped", sc)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want CPU and memory requests and a memory limit", c.Resources)
	}
	if pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks {
		t.Error("enableServiceLinks is not false: the Service berth would put BERTH_PORT and the like into the environment")
	}

	// What the pod mounts exists, and /etc/berth holds berth.yaml.
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			cm := get[*corev1.ConfigMap](t, objs, "ConfigMap", v.ConfigMap.Name)
			if _, ok := cm.Data["berth.yaml"]; !ok || mounts[v.Name] != "/etc/berth" {
				t.Errorf("ConfigMap %s mounted at %q: want berth.yaml in /etc/berth", cm.Name, mounts[v.Name])
			}
		case v.PersistentVolumeClaim != nil:
			get[*corev1.PersistentVolumeClaim](t, objs, "PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName)
		}
		delete(mounts, v.Name)
	}
	if len(mounts) > 0 {
		t.Errorf("mounts of volumes the pod does not have: %v", mounts)
	}
	if mounts := c.VolumeMounts; !slices.ContainsFunc(mounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/data" && !m.ReadOnly }) {
		t.Errorf("volume mounts %+v: want /data writable", mounts)
	}
	if sa := get[*corev1.ServiceAccount](t, objs, "ServiceAccount", pod.Spec.ServiceAccountName); sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s mounts its token; Berth needs no API access", sa.Name)
	}

	// The Service, its monitor, the budget and the policy all find the pods and their ports.
	svc := get[*corev1.Service](t, objs, "Service", "berth")
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, pod.Labels)
	}
	for _, p := range svc.Spec.Ports {
		if _, ok := ports[p.TargetPort.String()]; !ok {
			t.Errorf("Service port %s targets %s, not a container port", p.Name, p.TargetPort.String())
		}
	}
	sm := get[*serviceMonitor](t, objs, "ServiceMonitor", "berth")
	if s, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector); err != nil || !s.Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor selector %v does not select the Service's labels %v", sm.Spec.Selector, svc.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v: want /metrics on the port metrics", sm.Spec.Endpoints)
	}
	pdb := get[*policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "berth")
	if s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err != nil || !s.Matches(labels.Set(pod.Labels)) || pdb.Spec.MaxUnavailable == nil {
		t.Errorf("PodDisruptionBudget %+v: want maxUnavailable for the pods", pdb.Spec)
	}
	np := get[*networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "berth")
	if s, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); err != nil || !s.Matches(labels.Set(pod.Labels)) {
		t.Errorf("NetworkPolicy selector %v does not select the pods", np.Spec.PodSelector)
	}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if _, ok := ports[p.Port.String()]; !ok {
				t.Errorf("NetworkPolicy admits port %s, not a container port", p.Port.String())
			}
		}
	}

	// berth rollout's account, bound in the namespace it is created in.
	get[*corev1.ServiceAccount](t, objs, "ServiceAccount", "berth-rollout")
	get[*rbacv1.ClusterRole](t, objs, "ClusterRole", "berth-rollout")
	crb := get[*rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", "berth-rollout")
	if len(crb.Subjects) != 1 || crb.Subjects[0].Name != "berth-rollout" || crb.Subjects[0].Namespace != "berth" {
		t.Errorf("ClusterRoleBinding subjects %+v: want the ServiceAccount berth-rollout in berth", crb.Subjects)
	}
}

func checkSingleNode(t *testing.T, objs rendered, d *appsv1.Deployment) {
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("replicas %v, strategy %q: want one replica, recreated", d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	data := volume(t, d, "data")
	if data.PersistentVolumeClaim == nil || data.EmptyDir != nil {
		t.Errorf("volume data %+v: want the PersistentVolumeClaim alone", data.VolumeSource)
	}
	config := configOf(t, objs, d)
	if config["storage"] != nil || config["database"] != nil {
		t.Errorf("berth.yaml sets storage or database; single-node wants the defaults, disk and SQLite under /data:\n%v", config)
	}
}

func checkHA(t *testing.T, objs rendered, d *appsv1.Deployment) {
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", d.Spec.Replicas)
	}
	if ru := d.Spec.Strategy.RollingUpdate; d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("strategy %+v: want a rolling update that keeps every replica", d.Spec.Strategy)
	}
	pod := d.Spec.Template
	aff := pod.Spec.Affinity
	if aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
		t.Fatalf("affinity %+v: want pod anti-affinity", aff)
	}
	term := aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
	if s, err := metav1.LabelSelectorAsSelector(term.LabelSelector); err != nil || !s.Matches(labels.Set(pod.Labels)) || term.TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("anti-affinity term %+v: want the pods kept apart by host", term)
	}
	if pvcs := objs["PersistentVolumeClaim"]; len(pvcs) > 0 {
		t.Errorf("PersistentVolumeClaims %v: replicas keep nothing on disk", pvcs)
	}
	if data := volume(t, d, "data"); data.EmptyDir == nil {
		t.Errorf("volume data %+v: want an emptyDir", data.VolumeSource)
	}
	env := map[string]*corev1.EnvVarSource{}
	for _, e := range pod.Spec.Containers[0].Env {
		if e.Value != "" {
			t.Errorf("env %s has a value in the manifest; secrets come from Secrets", e.Name)
		}
		env[e.Name] = e.ValueFrom
	}
	for _, name := range []string{"BERTH_DATABASE", "BERTH_STORAGE_S3_ACCESS_KEY", "BERTH_STORAGE_S3_SECRET_KEY"} {
		if src := env[name]; src == nil || src.SecretKeyRef == nil {
			t.Errorf("env %s: want it from a Secret", name)
		}
	}
	if db := env["BERTH_DATABASE"]; db != nil && db.SecretKeyRef != nil && db.SecretKeyRef.Optional != nil && *db.SecretKeyRef.Optional {
		t.Error("BERTH_DATABASE is optional: without it the replicas would each use SQLite in an emptyDir")
	}
	config := configOf(t, objs, d)
	if storage, _ := config["storage"].(map[string]any); storage["driver"] != "s3" {
		t.Errorf("berth.yaml: storage %v, want driver s3", config["storage"])
	}
}

func volume(t *testing.T, d *appsv1.Deployment, name string) corev1.Volume {
	t.Helper()
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %s", name)
	return corev1.Volume{}
}

// configOf returns the berth.yaml the Deployment mounts, parsed.
func configOf(t *testing.T, objs rendered, d *appsv1.Deployment) map[string]any {
	t.Helper()
	cm := get[*corev1.ConfigMap](t, objs, "ConfigMap", volume(t, d, "config").ConfigMap.Name)
	var config map[string]any
	j, err := yaml.YAMLToJSONStrict([]byte(cm.Data["berth.yaml"]))
	if err == nil {
		err = json.Unmarshal(j, &config)
	}
	if err != nil {
		t.Fatalf("berth.yaml of ConfigMap %s: %v", cm.Name, err)
	}
	return config
}
