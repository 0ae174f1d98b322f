"""A small, pure-Python `kustomize build` for the subset of kustomize that k8s/ uses.

It lets the manifest tests check the rendered base and overlays on any machine;
`test_renderer_matches_kustomize` compares it with the real kustomize (`kubectl
kustomize`) where one is installed. A kustomization field outside the subset is
an error, so a new feature in k8s/ cannot be silently ignored by the tests.

Subset: resources (files and directories), namespace, images, configMapGenerator
(files, literals; behavior create/merge/replace; content-hash name suffix with
references rewritten), patches (strategic merge, with or without a target, and
JSON 6902 with a target).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "configMapGenerator", "patches"}
GENERATOR_FIELDS = {"name", "behavior", "files", "literals"}
PATCH_FIELDS = {"path", "target"}
TARGET_FIELDS = {"group", "version", "kind", "name", "labelSelector"}
IMAGE_FIELDS = {"name", "newName", "newTag", "digest"}

# strategic-merge keys of the built-in types used here (k8s.io/api patchMergeKey); other lists are replaced
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "topologySpreadConstraints": "topologyKey",
}
BUILTIN_GROUPS = {"", "apps", "policy", "networking.k8s.io", "batch", "autoscaling"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}
GENERATED = "kustomize.test/generated"  # marker annotation, removed in the final output


class KustomizeError(Exception):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return dict(loader.construct_mapping(node, deep))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_docs(path: Path) -> list[Any]:
    """Every non-empty document of a YAML file, refusing duplicate keys."""
    with open(path) as f:
        return [d for d in yaml.load_all(f, Loader=_UniqueKeyLoader) if d is not None]


def _group(doc: dict[str, Any]) -> str:
    api = str(doc.get("apiVersion", ""))
    return api.split("/")[0] if "/" in api else ""


def _is_builtin(doc: dict[str, Any]) -> bool:
    return _group(doc) in BUILTIN_GROUPS


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


# -- strategic merge ------------------------------------------------------------
def _smp(base: Any, patch: Any, builtin: bool) -> Any:
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    out = dict(base)
    for k, v in patch.items():
        if k == "$patch":
            raise KustomizeError(f"unsupported $patch directive {v!r} inside a document")
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and builtin and k in MERGE_KEYS and isinstance(out.get(k), list):
            out[k] = _merge_list(out[k], v, MERGE_KEYS[k], builtin)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _smp(out[k], v, builtin)
        else:
            out[k] = _strip_nulls(copy.deepcopy(v))
    return out


def _strip_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_strip_nulls(x) for x in v]
    return v


def _merge_list(base: list[Any], patch: list[Any], key: str, builtin: bool) -> list[Any]:
    out = [copy.deepcopy(x) for x in base]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise KustomizeError(f"list item without merge key {key!r}: {item!r}")
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_strip_nulls(copy.deepcopy(item)))
        else:
            out[idx] = _smp(out[idx], item, builtin)
    return out


# -- JSON 6902 ------------------------------------------------------------------
def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json6902(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        kind = op["op"]
        if isinstance(node, list):
            i = len(node) if last == "-" else int(last)
            if kind == "add":
                node.insert(i, copy.deepcopy(op["value"]))
            elif kind == "replace":
                node[i] = copy.deepcopy(op["value"])
            elif kind == "remove":
                node.pop(i)
            else:
                raise KustomizeError(f"unsupported JSON patch op {kind!r}")
        else:
            if kind in ("replace", "remove") and last not in node:
                raise KustomizeError(f"JSON patch {kind} of missing path {op['path']!r} in {_key(doc)}")
            if kind in ("add", "replace"):
                node[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del node[last]
            else:
                raise KustomizeError(f"unsupported JSON patch op {kind!r}")
    return doc


# -- targets --------------------------------------------------------------------
def _matches(doc: dict[str, Any], target: dict[str, Any]) -> bool:
    if set(target) - TARGET_FIELDS:
        raise KustomizeError(f"unsupported target fields {set(target) - TARGET_FIELDS}")
    if "group" in target and _group(doc) != target["group"]:
        return False
    if "version" in target and str(doc.get("apiVersion", "")).split("/")[-1] != target["version"]:
        return False
    if "kind" in target and not re.fullmatch(target["kind"], doc["kind"]):
        return False
    if "name" in target and not re.fullmatch(target["name"], doc["metadata"]["name"]):
        return False
    if "labelSelector" in target:
        labels = doc["metadata"].get("labels") or {}
        for term in str(target["labelSelector"]).split(","):
            k, _, v = term.partition("=")
            if labels.get(k.strip()) != v.strip():
                return False
    return True


# -- generators and transformers ------------------------------------------------
def _literal(s: str) -> tuple[str, str]:
    k, sep, v = s.partition("=")
    if not sep:
        raise KustomizeError(f"literal without '=': {s!r}")
    return k, v


def _generate(root: Path, gen: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    if set(gen) - GENERATOR_FIELDS:
        raise KustomizeError(f"unsupported configMapGenerator fields {set(gen) - GENERATOR_FIELDS}")
    data: dict[str, str] = {}
    for f in gen.get("files", []):
        key, sep, rel = f.partition("=")
        rel = rel if sep else key
        key = key if sep else Path(rel).name
        data[key] = (root / rel).read_text()
    for lit in gen.get("literals", []):
        k, v = _literal(lit)
        data[k] = v
    behavior = gen.get("behavior", "create")
    existing = next(
        (d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == gen["name"]),
        None,
    )
    if behavior == "create":
        if existing is not None:
            raise KustomizeError(f"ConfigMap {gen['name']} already exists (use behavior merge or replace)")
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": gen["name"], "annotations": {GENERATED: "true"}},
                "data": data,
            }
        )
    elif behavior in ("merge", "replace"):
        if existing is None or GENERATED not in (existing["metadata"].get("annotations") or {}):
            raise KustomizeError(f"behavior {behavior} needs a generated ConfigMap {gen['name']} from the resources")
        existing["data"] = {**existing["data"], **data} if behavior == "merge" else data
    else:
        raise KustomizeError(f"unknown behavior {behavior!r}")


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [spec["template"]["spec"]]
    if doc["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if doc["kind"] == "Pod":
        return [spec]
    return []


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]


def _set_images(docs: list[dict[str, Any]], images: list[dict[str, Any]]) -> None:
    for img in images:
        if set(img) - IMAGE_FIELDS:
            raise KustomizeError(f"unsupported images fields {set(img) - IMAGE_FIELDS}")
    for doc in docs:
        for pod in _pod_specs(doc):
            for c in _containers(pod):
                name = re.split(r"[@]", c["image"])[0]
                name = re.sub(r":[^:/]+$", "", name)
                for img in images:
                    if img["name"] != name:
                        continue
                    new = img.get("newName", name)
                    if "digest" in img:
                        c["image"] = f"{new}@{img['digest']}"
                    elif "newTag" in img:
                        c["image"] = f"{new}:{img['newTag']}"
                    else:
                        c["image"] = c["image"].replace(name, new, 1)


def _hash(doc: dict[str, Any]) -> str:
    blob = json.dumps({"kind": doc["kind"], "name": doc["metadata"]["name"], "data": doc["data"]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def _rename_generated(docs: list[dict[str, Any]]) -> None:
    renames: dict[str, str] = {}
    for doc in docs:
        ann = doc["metadata"].get("annotations") or {}
        if ann.pop(GENERATED, None) is not None:
            if not ann:
                del doc["metadata"]["annotations"]
            new = f"{doc['metadata']['name']}-{_hash(doc)}"
            renames[doc["metadata"]["name"]] = new
            doc["metadata"]["name"] = new
    for doc in docs:
        for pod in _pod_specs(doc):
            for v in pod.get("volumes") or []:
                if "configMap" in v and v["configMap"]["name"] in renames:
                    v["configMap"]["name"] = renames[v["configMap"]["name"]]
            for c in _containers(pod):
                for ef in c.get("envFrom") or []:
                    ref = ef.get("configMapRef")
                    if ref and ref["name"] in renames:
                        ref["name"] = renames[ref["name"]]
                for e in c.get("env") or []:
                    ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                    if ref and ref["name"] in renames:
                        ref["name"] = renames[ref["name"]]


def _accumulate(root: Path) -> list[dict[str, Any]]:
    kfile = root / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"no kustomization.yaml in {root}")
    (k,) = load_yaml_docs(kfile)
    unknown = set(k) - KUSTOMIZATION_FIELDS
    if unknown:
        raise KustomizeError(f"{kfile}: fields the test renderer does not implement: {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for res in k.get("resources", []):
        p = root / res
        docs += _accumulate(p) if p.is_dir() else load_yaml_docs(p)
    for gen in k.get("configMapGenerator", []):
        _generate(root, gen, docs)
    for entry in k.get("patches", []):
        if set(entry) - PATCH_FIELDS:
            raise KustomizeError(f"unsupported patch fields {set(entry) - PATCH_FIELDS}")
        content = load_yaml_docs(root / entry["path"])
        target = entry.get("target")
        if len(content) == 1 and isinstance(content[0], list):
            if target is None:
                raise KustomizeError(f"JSON 6902 patch {entry['path']} needs a target")
            hits = [i for i, d in enumerate(docs) if _matches(d, target)]
            if not hits:
                raise KustomizeError(f"patch {entry['path']}: no resource matches {target}")
            for i in hits:
                docs[i] = _json6902(docs[i], content[0])
            continue
        for patch in content:
            sel = target or {
                "group": _group(patch),
                "kind": re.escape(patch["kind"]),
                "name": re.escape(patch["metadata"]["name"]),
            }
            hits = [i for i, d in enumerate(docs) if _matches(d, sel)]
            if not hits:
                raise KustomizeError(f"patch {entry['path']}: no resource matches {sel}")
            if patch.get("$patch") == "delete":
                docs = [d for i, d in enumerate(docs) if i not in hits]
                continue
            body = {k2: v for k2, v in patch.items() if k2 not in ("apiVersion", "kind")}
            body["metadata"] = {k2: v for k2, v in patch["metadata"].items() if k2 != "name"}
            if not body["metadata"]:
                del body["metadata"]
            for i in hits:
                docs[i] = _smp(docs[i], body, _is_builtin(docs[i]))
    if "namespace" in k:
        for d in docs:
            if d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = k["namespace"]
    _set_images(docs, k.get("images", []))
    seen: set[tuple[str, str]] = set()
    for d in docs:
        if _key(d) in seen:
            raise KustomizeError(f"{root}: duplicate resource {_key(d)}")
        seen.add(_key(d))
    return docs


def build(root: Path) -> list[dict[str, Any]]:
    """The resources `kustomize build root` outputs (order aside)."""
    docs = _accumulate(Path(root))
    _rename_generated(docs)
    return docs


def referenced_files(root: Path) -> set[Path]:
    """Files a kustomization directory names directly (resources, generator files, patches)."""
    (k,) = load_yaml_docs(root / "kustomization.yaml")
    out: set[Path] = set()
    for res in k.get("resources", []):
        out.add((root / res).resolve())
    for gen in k.get("configMapGenerator", []):
        for f in gen.get("files", []):
            out.add((root / (f.partition("=")[2] if "=" in f else f)).resolve())
    for p in k.get("patches", []):
        out.add((root / p["path"]).resolve())
    return out
