#!/usr/bin/python3
"""Project checks of rendered Kubernetes manifests, for what schemas miss (tests/k8s/validate.sh).

Usage: check_manifests.py FILE.yaml...   (one group: an overlay's objects plus its Jobs, rendered)
Exit 0 when every check passes, 1 with one line per problem, 2 on usage errors.

Checks: every key of every object is in an allowlist of the fields this project uses (a misspelled
`maxUnavailabel` or an unplanned field is reported with its path; extend ALLOW when a field is meant);
selectors match pod template labels; Service selectors and targetPorts match a workload; `serviceName`
names a headless Service selecting the StatefulSet's pods; PDB, NetworkPolicy and anti-affinity selectors
match pods; probe ports are numbers equal to a containerPort; every container has cpu and memory requests
and a memory limit (shards: limit = request); images are pinned (a tag other than latest, or a digest);
referenced ConfigMaps, PVCs, downward-API labels and HPA targets exist; one namespace; etcd's
--initial-cluster lists exactly its replicas; shard partitions are 0..P-1 once each and agree with the
build Job's partition count; the Jobs' cluster name and etcd URL equal the servers'; an Indexed Job (the
distributed build's encode workers) runs completions = parallelism = VS_BUILD_WORKERS pods, each index with
its own retries (backoffLimitPerIndex).
"""
import re
import sys

import yaml

MAP = "map"  # free-form string map (labels, annotations, data, matchLabels, requests)
LEAF = None

# Allowlists: type -> {key: subtype}; a subtype in a list means a list of that type.
ALLOW = {
    "Meta": {"name": LEAF, "namespace": LEAF, "labels": MAP, "annotations": MAP},
    "Selector": {"matchLabels": MAP, "matchExpressions": ["SelectorReq"]},
    "SelectorReq": {"key": LEAF, "operator": LEAF, "values": LEAF},
    "Template": {"metadata": "Meta", "spec": "PodSpec"},
    "PodSpec": {"containers": ["Container"], "initContainers": ["Container"], "volumes": ["Volume"],
                "restartPolicy": LEAF, "terminationGracePeriodSeconds": LEAF, "enableServiceLinks": LEAF,
                "securityContext": "PodSecurity", "affinity": "Affinity", "serviceAccountName": LEAF,
                "automountServiceAccountToken": LEAF, "nodeSelector": MAP, "priorityClassName": LEAF,
                "topologySpreadConstraints": ["SpreadConstraint"]},
    "Container": {"name": LEAF, "image": LEAF, "imagePullPolicy": LEAF, "command": LEAF, "args": LEAF,
                  "workingDir": LEAF, "env": ["Env"], "envFrom": ["EnvFrom"], "ports": ["ContainerPort"],
                  "startupProbe": "Probe", "readinessProbe": "Probe", "livenessProbe": "Probe",
                  "resources": "Resources", "securityContext": "Security", "volumeMounts": ["Mount"],
                  "lifecycle": "Lifecycle"},
    "Env": {"name": LEAF, "value": LEAF, "valueFrom": "EnvSource"},
    "EnvSource": {"fieldRef": "FieldRef", "configMapKeyRef": "KeyRef", "secretKeyRef": "KeyRef"},
    "FieldRef": {"fieldPath": LEAF, "apiVersion": LEAF},
    "KeyRef": {"name": LEAF, "key": LEAF, "optional": LEAF},
    "EnvFrom": {"configMapRef": "NameRef", "secretRef": "NameRef", "prefix": LEAF},
    "NameRef": {"name": LEAF, "optional": LEAF},
    "ContainerPort": {"name": LEAF, "containerPort": LEAF, "protocol": LEAF},
    "Probe": {"grpc": "GrpcAction", "httpGet": "HttpGet", "tcpSocket": "TcpSocket", "exec": "Exec",
              "initialDelaySeconds": LEAF, "periodSeconds": LEAF, "timeoutSeconds": LEAF,
              "failureThreshold": LEAF, "successThreshold": LEAF},
    "GrpcAction": {"port": LEAF, "service": LEAF},
    "HttpGet": {"path": LEAF, "port": LEAF, "scheme": LEAF},
    "TcpSocket": {"port": LEAF},
    "Exec": {"command": LEAF},
    "Lifecycle": {"preStop": "Handler", "postStart": "Handler"},
    "Handler": {"exec": "Exec", "httpGet": "HttpGet"},
    "Resources": {"requests": MAP, "limits": MAP},
    "Security": {"allowPrivilegeEscalation": LEAF, "readOnlyRootFilesystem": LEAF, "capabilities": "Caps",
                 "runAsNonRoot": LEAF, "runAsUser": LEAF, "runAsGroup": LEAF},
    "Caps": {"add": LEAF, "drop": LEAF},
    "PodSecurity": {"runAsNonRoot": LEAF, "runAsUser": LEAF, "runAsGroup": LEAF, "fsGroup": LEAF,
                    "fsGroupChangePolicy": LEAF, "seccompProfile": "Seccomp"},
    "Seccomp": {"type": LEAF},
    "Mount": {"name": LEAF, "mountPath": LEAF, "readOnly": LEAF, "subPath": LEAF},
    "Volume": {"name": LEAF, "persistentVolumeClaim": "PvcSource", "configMap": "CmSource",
               "emptyDir": "EmptyDir", "secret": "SecretSource"},
    "SecretSource": {"secretName": LEAF, "optional": LEAF, "defaultMode": LEAF},
    "PvcSource": {"claimName": LEAF, "readOnly": LEAF},
    "CmSource": {"name": LEAF, "defaultMode": LEAF, "optional": LEAF},
    "EmptyDir": {"medium": LEAF, "sizeLimit": LEAF},
    "Affinity": {"podAntiAffinity": "PodAffinity", "podAffinity": "PodAffinity"},
    "PodAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": ["AffinityTerm"],
                    "preferredDuringSchedulingIgnoredDuringExecution": ["WeightedTerm"]},
    "WeightedTerm": {"weight": LEAF, "podAffinityTerm": "AffinityTerm"},
    "AffinityTerm": {"topologyKey": LEAF, "labelSelector": "Selector"},
    "SpreadConstraint": {"maxSkew": LEAF, "topologyKey": LEAF, "whenUnsatisfiable": LEAF, "labelSelector": "Selector",
                         "minDomains": LEAF},
    "StatefulSetSpec": {"serviceName": LEAF, "replicas": LEAF, "podManagementPolicy": LEAF,
                        "updateStrategy": "StsStrategy", "selector": "Selector", "template": "Template",
                        "volumeClaimTemplates": ["PvcTemplate"], "revisionHistoryLimit": LEAF,
                        "minReadySeconds": LEAF},
    "StsStrategy": {"type": LEAF, "rollingUpdate": "StsRolling"},
    "StsRolling": {"partition": LEAF},
    "PvcTemplate": {"metadata": "Meta", "spec": "PvcSpec"},
    "PvcSpec": {"accessModes": LEAF, "resources": "Resources", "storageClassName": LEAF, "volumeMode": LEAF},
    "DeploymentSpec": {"replicas": LEAF, "revisionHistoryLimit": LEAF, "strategy": "DeployStrategy",
                       "selector": "Selector", "template": "Template", "minReadySeconds": LEAF,
                       "progressDeadlineSeconds": LEAF},
    "DeployStrategy": {"type": LEAF, "rollingUpdate": "DeployRolling"},
    "DeployRolling": {"maxUnavailable": LEAF, "maxSurge": LEAF},
    "ServiceSpec": {"type": LEAF, "clusterIP": LEAF, "publishNotReadyAddresses": LEAF, "selector": MAP,
                    "ports": ["ServicePort"], "sessionAffinity": LEAF},
    "ServicePort": {"name": LEAF, "port": LEAF, "targetPort": LEAF, "protocol": LEAF, "appProtocol": LEAF},
    "PdbSpec": {"maxUnavailable": LEAF, "minAvailable": LEAF, "selector": "Selector",
                "unhealthyPodEvictionPolicy": LEAF},
    "HpaSpec": {"scaleTargetRef": "ScaleRef", "minReplicas": LEAF, "maxReplicas": LEAF,
                "metrics": ["HpaMetric"], "behavior": "HpaBehavior"},
    "ScaleRef": {"apiVersion": LEAF, "kind": LEAF, "name": LEAF},
    "HpaMetric": {"type": LEAF, "resource": "HpaResource"},
    "HpaResource": {"name": LEAF, "target": "HpaTarget"},
    "HpaTarget": {"type": LEAF, "averageUtilization": LEAF, "averageValue": LEAF},
    "HpaBehavior": {"scaleUp": "HpaRules", "scaleDown": "HpaRules"},
    "HpaRules": {"stabilizationWindowSeconds": LEAF, "selectPolicy": LEAF, "policies": LEAF},
    "JobSpec": {"backoffLimit": LEAF, "ttlSecondsAfterFinished": LEAF, "activeDeadlineSeconds": LEAF,
                "completions": LEAF, "parallelism": LEAF, "template": "Template", "completionMode": LEAF,
                "backoffLimitPerIndex": LEAF, "maxFailedIndexes": LEAF},
    "NetpolSpec": {"podSelector": "Selector", "policyTypes": LEAF, "ingress": ["NetpolRule"],
                   "egress": ["NetpolEgress"]},
    "NetpolRule": {"from": ["NetpolPeer"], "ports": ["NetpolPort"]},
    "NetpolEgress": {"to": ["NetpolPeer"], "ports": ["NetpolPort"]},
    "NetpolPeer": {"podSelector": "Selector", "namespaceSelector": "Selector", "ipBlock": "IpBlock"},
    "IpBlock": {"cidr": LEAF, "except": LEAF},
    "NetpolPort": {"protocol": LEAF, "port": LEAF, "endPort": LEAF},
}
KINDS = {  # (apiVersion, kind) -> allowed top-level keys
    ("v1", "Namespace"): {"metadata": "Meta"},
    ("v1", "ConfigMap"): {"metadata": "Meta", "data": MAP, "immutable": LEAF},
    ("v1", "Service"): {"metadata": "Meta", "spec": "ServiceSpec"},
    ("v1", "PersistentVolumeClaim"): {"metadata": "Meta", "spec": "PvcSpec"},
    ("apps/v1", "StatefulSet"): {"metadata": "Meta", "spec": "StatefulSetSpec"},
    ("apps/v1", "Deployment"): {"metadata": "Meta", "spec": "DeploymentSpec"},
    ("batch/v1", "Job"): {"metadata": "Meta", "spec": "JobSpec"},
    ("policy/v1", "PodDisruptionBudget"): {"metadata": "Meta", "spec": "PdbSpec"},
    ("autoscaling/v2", "HorizontalPodAutoscaler"): {"metadata": "Meta", "spec": "HpaSpec"},
    ("networking.k8s.io/v1", "NetworkPolicy"): {"metadata": "Meta", "spec": "NetpolSpec"},
}
WORKLOADS = ("StatefulSet", "Deployment", "Job")
# labels Kubernetes sets on pods itself (PodTopologyLabels admission): a template need not carry them
ADMISSION_LABELS = {"topology.kubernetes.io/zone", "topology.kubernetes.io/region"}
PARTITION_LABEL = "vecshard.io/partition"

errors = []


def err(o, msg):
    errors.append(f"{o['_file']}: {o.get('kind')}/{o.get('metadata', {}).get('name')}: {msg}")


def walk_keys(o, node, typ, path):
    """Reports every key of node that the allowlist of typ does not hold."""
    if typ is LEAF:
        return
    if typ == MAP:
        if not isinstance(node, dict):
            err(o, f"{path}: expected a map")
        return
    if isinstance(typ, list):
        if not isinstance(node, list):
            err(o, f"{path}: expected a list")
            return
        for i, item in enumerate(node):
            walk_keys(o, item, typ[0], f"{path}[{i}]")
        return
    allowed = ALLOW[typ] if isinstance(typ, str) else typ
    if not isinstance(node, dict):
        err(o, f"{path}: expected an object")
        return
    for k, v in node.items():
        if k not in allowed:
            err(o, f"unknown field {path}.{k}" if path else f"unknown field {k}")
        else:
            walk_keys(o, v, allowed[k], f"{path}.{k}" if path else k)


def matches(selector, labels):
    """A LabelSelector (or a plain map) selects labels: every pair present. Empty selects everything."""
    if selector is None:
        return False
    ml = selector.get("matchLabels", {}) if "matchLabels" in selector or "matchExpressions" in selector \
        else selector
    if any(labels.get(k) != v for k, v in (ml or {}).items()):
        return False
    for e in selector.get("matchExpressions", []) if isinstance(selector, dict) else []:
        val, op = labels.get(e["key"]), e["operator"]
        if op == "In" and val not in e.get("values", []) or op == "NotIn" and val in e.get("values", []) \
                or op == "Exists" and val is None or op == "DoesNotExist" and val is not None:
            return False
    return True


def pod_labels(w):
    return (w["spec"].get("template", {}).get("metadata", {}) or {}).get("labels", {}) or {}


def pod_spec(w):
    return w["spec"].get("template", {}).get("spec", {}) or {}


def env_of(c):
    return {e["name"]: e.get("value") for e in c.get("env", []) or []}


def check_image(o, c):
    img = c.get("image", "")
    if "@sha256:" in img:
        return
    last = img.rsplit("/", 1)[-1]
    if ":" not in last:
        err(o, f"container {c.get('name')}: image '{img}' has no tag (pin a version or a digest)")
    elif last.rsplit(":", 1)[1] == "latest":
        err(o, f"container {c.get('name')}: image '{img}' uses the tag latest")


def check_container(o, c, long_running):
    name = c.get("name")
    check_image(o, c)
    res = c.get("resources", {}) or {}
    req, lim = res.get("requests", {}) or {}, res.get("limits", {}) or {}
    for r in ("cpu", "memory"):
        if r not in req:
            err(o, f"container {name}: no resources.requests.{r}")
    if "memory" not in lim:
        err(o, f"container {name}: no resources.limits.memory")
    ports = {p.get("containerPort") for p in c.get("ports", []) or []}
    for pname in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c.get(pname)
        if probe is None:
            if long_running and pname != "startupProbe":
                err(o, f"container {name}: no {pname}")
            continue
        for action in ("grpc", "httpGet", "tcpSocket"):
            if action in probe:
                port = probe[action].get("port")
                if not isinstance(port, int) or isinstance(port, bool):
                    err(o, f"container {name}: {pname}.{action}.port {port!r} is not a number")
                elif port not in ports:
                    err(o, f"container {name}: {pname}.{action}.port {port} is not a containerPort "
                           f"{sorted(p for p in ports if p is not None)}")


def main(files):
    objs = []
    for f in files:
        with open(f) as fh:
            for d in yaml.safe_load_all(fh):
                if d:
                    d["_file"] = f
                    objs.append(d)
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o.get("kind"), []).append(o)
        key = (o.get("apiVersion"), o.get("kind"))
        if key not in KINDS:
            err(o, f"apiVersion {key[0]} kind {key[1]} is not in the allowlist of tests/k8s/check_manifests.py")
            continue
        walk_keys(o, {k: v for k, v in o.items() if k not in ("apiVersion", "kind", "_file")}, KINDS[key], "")
        if not o.get("metadata", {}).get("name"):
            err(o, "no metadata.name")
    names = lambda kind: {o["metadata"]["name"] for o in by_kind.get(kind, [])}  # noqa: E731
    workloads = [o for o in objs if o.get("kind") in WORKLOADS and isinstance(o.get("spec"), dict)]
    configmaps = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", [])}

    # One namespace, declared.
    nss = {o["metadata"].get("namespace") for o in objs if o.get("kind") != "Namespace"}
    if len(nss) != 1 or None in nss:
        errors.append(f"objects are in namespaces {sorted(map(str, nss))}, expected exactly one")
    elif nss - names("Namespace"):
        errors.append(f"namespace {nss.pop()} has no Namespace object")

    for w in workloads:
        labels, spec = pod_labels(w), pod_spec(w)
        if w["kind"] != "Job":
            sel = w["spec"].get("selector")
            if not sel or not sel.get("matchLabels") and not sel.get("matchExpressions"):
                err(w, "no spec.selector")
            elif not matches(sel, labels):
                err(w, f"spec.selector {sel} does not match the pod template labels {labels}")
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            check_container(w, c, w["kind"] != "Job" and c in spec.get("containers", []))
            for e in c.get("env", []) or []:
                fp = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath", "")
                m = re.fullmatch(r"metadata\.labels\['([^']+)'\]", fp)
                if m and m.group(1) not in labels and m.group(1) not in ADMISSION_LABELS:
                    err(w, f"env {e['name']} reads label {m.group(1)}, which the pod template lacks")
                ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                if ref and ref.get("name") not in configmaps:
                    err(w, f"env {e['name']}: no ConfigMap {ref.get('name')}")
            for ef in c.get("envFrom", []) or []:
                ref = ef.get("configMapRef")
                if ref and ref.get("name") not in configmaps:
                    err(w, f"container {c.get('name')}: envFrom names ConfigMap {ref.get('name')}, not rendered")
        for v in spec.get("volumes", []) or []:
            pvc = v.get("persistentVolumeClaim")
            if pvc and pvc.get("claimName") not in names("PersistentVolumeClaim"):
                err(w, f"volume {v.get('name')}: no PersistentVolumeClaim {pvc.get('claimName')}")
        mounts = {m.get("name") for c in spec.get("containers", []) for m in c.get("volumeMounts", []) or []}
        vols = {v.get("name") for v in spec.get("volumes", []) or []}
        vols |= {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", []) or []}
        for m in mounts - vols:
            err(w, f"volumeMount {m} names no volume")
        anti = (spec.get("affinity") or {}).get("podAntiAffinity") or {}
        terms = list(anti.get("requiredDuringSchedulingIgnoredDuringExecution", []) or []) + \
            [t.get("podAffinityTerm", {}) for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", []) or []]
        for t in terms:
            if not matches(t.get("labelSelector"), labels):
                err(w, f"podAntiAffinity selector {t.get('labelSelector')} does not match the pod's own labels "
                       f"{labels}: it spreads nothing")

    def selected(sel, plain=False):
        return [w for w in workloads if (matches(sel, pod_labels(w)) if not plain else
                                          all(pod_labels(w).get(k) == v for k, v in sel.items()))]

    services = {o["metadata"]["name"]: o for o in by_kind.get("Service", [])}
    for s in services.values():
        sel = s.get("spec", {}).get("selector")
        if not sel:
            err(s, "no selector")
            continue
        ws = selected(sel, plain=True)
        if not ws:
            err(s, f"selector {sel} matches no workload's pods")
            continue
        cports = {p.get("containerPort") for w in ws for c in pod_spec(w).get("containers", [])
                  for p in c.get("ports", []) or []}
        for p in s["spec"].get("ports", []) or []:
            tp = p.get("targetPort", p.get("port"))
            if isinstance(tp, int) and tp not in cports:
                err(s, f"port {p.get('name')}: targetPort {tp} is no containerPort of the selected pods")

    for w in by_kind.get("StatefulSet", []):
        sn = w["spec"].get("serviceName")
        s = services.get(sn)
        if s is None:
            err(w, f"serviceName {sn!r} names no Service")
        elif s["spec"].get("clusterIP") != "None":
            err(w, f"serviceName {sn}: the Service is not headless (clusterIP: None)")
        elif not all(pod_labels(w).get(k) == v for k, v in (s["spec"].get("selector") or {}).items()):
            err(w, f"serviceName {sn}: the Service does not select this StatefulSet's pods")

    for p in by_kind.get("PodDisruptionBudget", []):
        if not selected(p.get("spec", {}).get("selector")):
            err(p, f"selector {p.get('spec', {}).get('selector')} matches no workload's pods")

    for h in by_kind.get("HorizontalPodAutoscaler", []):
        ref = h.get("spec", {}).get("scaleTargetRef", {})
        if ref.get("name") not in names(ref.get("kind")):
            err(h, f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} does not exist")

    for n in by_kind.get("NetworkPolicy", []):
        spec = n.get("spec", {})
        ps = spec.get("podSelector")
        if ps is None:
            err(n, "no podSelector")
        elif ps and not selected(ps):
            err(n, f"podSelector {ps} matches no workload's pods")
        for r in spec.get("ingress", []) or []:
            for peer in r.get("from", []) or []:
                if "podSelector" in peer and "namespaceSelector" not in peer and not selected(peer["podSelector"]):
                    err(n, f"ingress from podSelector {peer['podSelector']} matches no workload's pods")

    # etcd: the static bootstrap lists exactly the StatefulSet's members.
    for w in by_kind.get("StatefulSet", []):
        for c in pod_spec(w).get("containers", []):
            ic = env_of(c).get("ETCD_INITIAL_CLUSTER")
            if ic is None:
                continue
            members = sorted(m.split("=", 1)[0] for m in ic.split(","))
            want = sorted(f"{w['metadata']['name']}-{i}" for i in range(w["spec"].get("replicas", 1)))
            if members != want:
                err(w, f"ETCD_INITIAL_CLUSTER lists {members}, but the StatefulSet runs {want}")

    # NATS: the routes in its config name exactly the StatefulSet's servers (none for one server), and the
    # write log's stream replicas (VS_LOG_REPLICAS) are no more than the servers.
    cms = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", [])}
    for w in by_kind.get("StatefulSet", []):
        if pod_labels(w).get("app.kubernetes.io/component") != "nats":
            continue
        n_servers = w["spec"].get("replicas", 1)
        conf = ""
        for v in pod_spec(w).get("volumes", []) or []:
            cm = (v.get("configMap") or {}).get("name")
            if cm in cms:
                conf += "".join((cms[cm].get("data") or {}).values())
        routes = sorted(set(re.findall(r"nats://([a-z0-9-]+)\.[a-z0-9.-]+:6222", conf)))
        want = sorted(f"{w['metadata']['name']}-{i}" for i in range(n_servers)) if n_servers > 1 else []
        if routes != want:
            err(w, f"NATS routes name {routes}, but the StatefulSet runs {n_servers} server(s)")
        for cm in cms.values():
            r = (cm.get("data") or {}).get("VS_LOG_REPLICAS")
            if r is not None and int(r) > n_servers:
                err(cm, f"VS_LOG_REPLICAS={r} but NATS runs {n_servers} server(s): the stream cannot be created")

    # Shards: partitions 0..P-1 once each; the build Job makes P partitions; one cluster, one etcd.
    shard_sets = [w for w in by_kind.get("StatefulSet", []) if PARTITION_LABEL in pod_labels(w)]
    if shard_sets:
        parts = sorted(int(pod_labels(w)[PARTITION_LABEL]) for w in shard_sets)
        if parts != list(range(len(parts))):
            errors.append(f"shard partitions are {parts}, expected 0..{len(parts) - 1} once each")
        for w in shard_sets:
            for c in pod_spec(w).get("containers", []):
                r = (c.get("resources") or {})
                if (r.get("limits") or {}).get("memory") != (r.get("requests") or {}).get("memory"):
                    err(w, f"container {c['name']}: shard memory limit must equal the request (the index "
                           "is in memory; docs/operations.md)")
        for cm in configmaps.values():
            bp = (cm.get("data") or {}).get("VS_BUILD_PARTITIONS")
            if bp is not None and bp != str(len(parts)):
                err(cm, f"VS_BUILD_PARTITIONS={bp}, but {len(parts)} shard partitions are deployed")
    # The distributed build: an Indexed Job's pod count is the workers count the merge is told.
    for w in by_kind.get("Job", []):
        js = w["spec"]
        if js.get("completionMode") != "Indexed":
            continue
        if js.get("parallelism") != js.get("completions"):
            err(w, f"Indexed Job: parallelism {js.get('parallelism')} != completions {js.get('completions')} "
                   "(the merge waits for every index)")
        if js.get("backoffLimitPerIndex") is None:
            err(w, "Indexed Job without backoffLimitPerIndex: one failing slice would use up every retry")
        for cm in configmaps.values():
            nw = (cm.get("data") or {}).get("VS_BUILD_WORKERS")
            if nw is not None and nw != str(js.get("completions")):
                err(cm, f"VS_BUILD_WORKERS={nw}, but Job {w['metadata']['name']} runs {js.get('completions')} "
                        "indexes")
    for key in ("VS_CLUSTER", "VS_ETCD"):
        vals = {(cm.get("data") or {}).get(key) for cm in configmaps.values()} - {None}
        if len(vals) > 1:
            errors.append(f"ConfigMaps disagree on {key}: {sorted(vals)}")

    for e in errors:
        print(e)
    print(f"check_manifests: {len(objs)} objects, {len(errors)} problems", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
