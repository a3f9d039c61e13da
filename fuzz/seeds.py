#!/usr/bin/env python3
"""Writes the committed seed corpus, fuzz/corpus/<target>/, from the
header values real registries send, the repository's fixtures and
examples, and small images built here. Deterministic: rerunning it
rewrites the same files. Crashing inputs found by a campaign are kept
beside these under corpus/<target>/crash-* (this script leaves them be).

    python3 fuzz/seeds.py
"""

import hashlib
import io
import json
import os
import sys
import tarfile

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
CORPUS = os.path.join(FUZZ, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def sha512(b):
    return "sha512:" + hashlib.sha512(b).hexdigest()


def fixture(name):
    with open(os.path.join(ROOT, name), "rb") as f:
        return f.read()


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"

# ------------------------------------------------------------ references

REFERENCES = [
    "ubuntu",
    "ubuntu:22.04",
    "library/ubuntu@sha256:" + "a" * 64,
    "docker.io/library/busybox:1.36",
    "index.docker.io/library/redis:7.4",
    "registry-1.docker.io/prom/node-exporter:v1.8.2",
    "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
    "myacr.azurecr.io/boot/vm-bootstrapper/binimage/linux:eastus-stable",
    "myacr.azurecr.io/cap/data-capability/installed@sha256:" + "0123456789abcdef" * 4,
    "ghcr.io/owner/repo:v1.0.0@sha256:" + "f" * 64,
    "quay.io/prometheus/node-exporter:v1.8.2",
    "registry.k8s.io/pause:3.9",
    "us-docker.pkg.dev/project/repo/image:tag",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:2024-01-01",
    "localhost:5000/a/b/c:tag_1.2-rc",
    "localhost/x",
    "127.0.0.1:5000/fixture/lifecycler__x--y.z@sha512:" + "e" * 128,
    "[::1]:5000/ipv6/repo:latest",
    "[fe80::1]/x",
    "Upper.Case:80/path",
    "a" * 255,
]
for i, r in enumerate(REFERENCES):
    write("reference", f"seed-{i:02}", r)

# --------------------------------------------------------------- digests

manifest0 = fixture("fixtures/azureml/blobs/sha256/9b3f5f36216833a2f0d1021aab7dac373c11b954eaa4a70d39b7a331ab79d892")
DIGESTS = [
    "sha256:9b3f5f36216833a2f0d1021aab7dac373c11b954eaa4a70d39b7a331ab79d892",
    sha512(b"mirror"),
    "sha256:" + "0" * 64,
    "sha384:" + "a" * 96,
    "sha256:" + "A" * 64,
    "sha256:../../etc/passwd",
]
for i, d in enumerate(DIGESTS):
    write("digest", f"seed-{i:02}", d)

# ---------------------------------------------------- WWW-Authenticate

CHALLENGES = [
    # Docker Hub
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull"',
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push",error="insufficient_scope"',
    # Azure Container Registry
    'Bearer realm="https://myacr.azurecr.io/oauth2/token",service="myacr.azurecr.io",scope="repository:boot/vm-bootstrapper/binimage/linux:pull"',
    'Bearer realm="https://myacr.azurecr.io/oauth2/token",service="myacr.azurecr.io",scope="registry:catalog:*"',
    # GitHub Container Registry
    'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:owner/repo:pull"',
    # Quay, Google Artifact Registry, Harbor
    'Bearer realm="https://quay.io/v2/auth",service="quay.io"',
    'Bearer realm="https://us-docker.pkg.dev/v2/token",service="us-docker.pkg.dev",scope="repository:project/repo/image:pull"',
    'Bearer realm="https://harbor.example/service/token",service="harbor-registry",scope="repository:library/nginx:pull,push repository:library/base:pull"',
    # distribution with htpasswd, Amazon ECR
    'Basic realm="Registry Realm"',
    'Basic realm="https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com"',
    # several at once, odd spacing and quoting
    'Basic realm="x", Bearer realm="https://t/token",scope="repository:host:5000/a:pull"',
    'bearer realm=https://t/token, service=svc',
    'Negotiate, Bearer realm="https://t/\\"quoted\\", with comma",error="invalid_token"',
]
for i, c in enumerate(CHALLENGES):
    write("challenge", f"seed-{i:02}", c)

# --------------------------------------------------- Content-Range, Range

RANGES = [
    "bytes 0-1023/4096",
    "bytes 100-199/200",
    "bytes 500-999/*",
    "bytes */1234",
    "0-0",
    "0-99",
    "bytes=0-1048575",
    "0-18446744073709551614",
]
for i, r in enumerate(RANGES):
    write("content_range", f"seed-{i:02}", r)

# -------------------------------------------------------------- Link

LINKS = [
    '</v2/_catalog?last=b&n=2>; rel="next"',
    '</v2/library/ubuntu/tags/list?n=100&last=22.04>; rel="next"',
    '<https://ghcr.io/v2/owner/repo/tags/list?last=v1.2.3&n=0>; rel="next"',
    '</v2/boot/vm-bootstrapper/binimage/linux/tags/list?last=eastus-stable&n=100&orderby=>; rel="next"',
    '<https://x/prev>; rel="prev", <https://x/next>; rel="next"',
    "</v2/a/tags/list?last=b>;rel=next",
    '<//other.example/v2/a/tags/list>; title="x"; rel="next"',
]
for i, l in enumerate(LINKS):
    write("link", f"seed-{i:02}", l)

# -------------------------------------------------------- Retry-After

RETRY_AFTER = [
    "120",
    "0",
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "Sunday, 06-Nov-94 08:49:37 GMT",
    "Sun Nov  6 08:49:37 1994",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "18446744073709551615",
]
for i, r in enumerate(RETRY_AFTER):
    write("retry_after", f"seed-{i:02}", r)

# ------------------------------------------------------ docker config


def b64(s):
    import base64

    return base64.b64encode(s.encode()).decode()


DOCKER_CONFIGS = [
    {"auths": {"https://index.docker.io/v1/": {"auth": b64("user:pa:ss")}}},
    {"auths": {"myacr.azurecr.io": {"identitytoken": "eyJhbGciOi.x.y"}}, "credsStore": "desktop"},
    {"auths": {"ghcr.io": {"username": "u", "password": "p"}, "localhost:5000": {"registrytoken": "t"}}},
    {"credHelpers": {"123456789012.dkr.ecr.us-east-1.amazonaws.com": "ecr-login", "gcr.io": "gcloud"}},
    {"auths": {"r.example": {"auth": "bm9jb2xvbg=="}, "http://R.Example/v2/": {"auth": "!!"}}},
    {"auths": {}, "HttpHeaders": {"User-Agent": "Docker-Client/24.0.7 (linux)"}, "experimental": "enabled"},
]
for i, c in enumerate(DOCKER_CONFIGS):
    write("docker_config", f"seed-{i:02}", json.dumps(c, indent=1))

# --------------------------------------------------------- index.json

write("oci_index", "seed-00-fixture", fixture("fixtures/azureml/index.json"))
write("oci_index", "seed-01-empty", json.dumps({"schemaVersion": 2, "manifests": []}))
one = json.dumps({"schemaVersion": 2}).encode()
write(
    "oci_index",
    "seed-02-unnamed-and-twice",
    json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": sha256(one), "size": len(one)},
                {"mediaType": OCI_MANIFEST, "digest": sha256(one), "size": len(one), "annotations": {REF_NAME: "a"}},
                {"mediaType": OCI_INDEX, "digest": sha512(one), "size": len(one), "annotations": {REF_NAME: "a"}},
            ],
            "annotations": {"dev.mirror.bundle.omitted-blobs": sha256(b"x") + " " + sha256(b"y")},
            "unknown": [1, {"kept": True}],
        }
    ),
)

# --------------------------------------------------------------- sync YAML

write("sync_config", "seed-00-sync", fixture("examples/sync.yaml"))
write("sync_config", "seed-01-demo", fixture("examples/sync-demo.yaml"))
write("skopeo_config", "seed-00-skopeo", fixture("examples/skopeo-sync.yaml"))
write(
    "skopeo_config",
    "seed-01-small",
    "localhost:5000:\n  tls-verify: false\n  images:\n    a/b: [v1, v2]\n  images-by-semver:\n    c: '^1.2'\n",
)

# ------------------------------------------------------ state directory

write("spool_state", "seed-00-half", '{"digest":"@D","size":@S,"offset":5}\n\nhello world')
write("spool_state", "seed-01-complete", '{"digest":"@D","size":@S,"offset":@S}\n\nhello world')
write(
    "spool_state",
    "seed-02-another-blob",
    '{"digest":"' + sha256(b"other") + '","size":11,"offset":11}\n' + sha256(b"hello world") + " 11\nhello_world",
)
write("spool_state", "seed-03-beyond", '{"digest":"@D","size":@S,"offset":99}\n@D 18446744073709551615\nshort')
write(
    "upload_state",
    "seed-00-record",
    '{"repository":"@R","digest":"@D","size":@S,"location":"https://r.example/v2/fuzz/repo/blobs/uploads/3f1c?_state=abc","offset":8388608}',
)
write(
    "upload_state",
    "seed-01-other",
    '{"repository":"r.example/other","digest":"@D","size":1,"location":"relative/path","offset":99}',
)

# ----------------------------------------------------------- image graph


def desc(media_type, digest, size, **more):
    d = {"mediaType": media_type, "digest": digest, "size": size}
    d.update(more)
    return d


def image_manifest(config_seed, layers, media_type=OCI_MANIFEST, **more):
    c = config_seed.encode()
    m = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": desc(OCI_CONFIG, sha256(c), len(c)),
        "layers": layers,
    }
    m.update(more)
    return m


def layer(seed, **more):
    b = seed.encode()
    return desc(OCI_LAYER, sha256(b), len(b), **more)


def child(i, **more):
    # `@x` and `#x` are the graph target's placeholders for the digest and
    # size of manifest x (see mirror::fuzzing::graph).
    letter = chr(ord("a") + i)
    return {"mediaType": OCI_MANIFEST, "digest": "@" + letter, "size": "#" + letter, **more}


def graph_input(options, manifests):
    parts = [options] + [
        json.dumps(m, indent=1)
        .replace('"#', "#")
        .replace('#a"', "#a")
        .replace('#b"', "#b")
        .replace('#c"', "#c")
        .replace('#d"', "#d")
        .replace('#e"', "#e")
        for m in manifests
    ]
    return "\n----\n".join(parts)


def platform(os_, arch, variant=None):
    p = {"os": os_, "architecture": arch}
    if variant:
        p["variant"] = variant
    return p


write("graph", "seed-00-fixture-manifest", b"\n----\n" + manifest0)
write(
    "graph",
    "seed-01-index",
    graph_input(
        "linux/amd64",
        [
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                child(1, platform=platform("linux", "amd64")),
                child(2, platform=platform("linux", "arm64", "v8")),
            ]},
            image_manifest("config amd64", [layer("base"), layer("amd64")]),
            image_manifest("config arm64", [layer("base"), layer("arm64")]),
        ],
    ),
)
write(
    "graph",
    "seed-02-cycle",
    graph_input(
        "",
        [
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": OCI_INDEX, "digest": "@b", "size": "#b"},
                {"mediaType": OCI_INDEX, "digest": "@a", "size": "#a"},
            ]},
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": OCI_INDEX, "digest": "@a", "size": "#a"},
                child(2),
            ]},
            image_manifest("c", [layer("l")]),
        ],
    ),
)
write(
    "graph",
    "seed-03-nested",
    graph_input(
        "",
        [
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_INDEX, "digest": "@b", "size": "#b"}]},
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_INDEX, "digest": "@c", "size": "#c"}]},
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_INDEX, "digest": "@d", "size": "#d"}]},
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child(4)]},
            image_manifest("deep", [layer("deep")]),
        ],
    ),
)
write(
    "graph",
    "seed-04-foreign-docker",
    graph_input(
        "+foreign windows/amd64",
        [
            {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
                {"mediaType": DOCKER_MANIFEST, "digest": "@b", "size": "#b", "platform": {"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.5458"}},
            ]},
            image_manifest(
                "win",
                [desc(FOREIGN, sha256(b"base"), 4, urls=["https://mcr.microsoft.com/v2/windows/blobs/x"]), layer("app")],
                media_type=DOCKER_MANIFEST,
            ),
        ],
    ),
)
write(
    "graph",
    "seed-05-artifact",
    graph_input(
        "",
        [
            image_manifest(
                "{}",
                [layer("sig", annotations={"org.opencontainers.image.title": "sig"})],
                artifactType="application/vnd.dev.cosign.artifact.sig.v1+json",
                subject={"mediaType": OCI_MANIFEST, "digest": sha256(b"s"), "size": 1},
            )
        ],
    ),
)

# ------------------------------------------------------------- bundles


def tar_bytes(files, fmt=tarfile.GNU_FORMAT, pax=None):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            if pax is not None:
                info.pax_headers = dict(pax)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


def bundle(images, algorithm=sha256, extra_index=None, dirs=False):
    """An OCI archive holding `images` (name → list of (kind, bytes))."""
    blobs = {}
    entries = []
    for name, manifest in images:
        data = json.dumps(manifest, indent=1).encode()
        blobs[algorithm(data)] = data
        mt = manifest.get("mediaType", OCI_MANIFEST)
        e = desc(mt, algorithm(data), len(data))
        if name:
            e["annotations"] = {REF_NAME: name}
        entries.append(e)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    if extra_index:
        index.update(extra_index)
    files = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())]
    files.append(("index.json", json.dumps(index).encode()))
    for d, data in sorted(blobs.items()):
        alg, hexd = d.split(":")
        files.append((f"blobs/{alg}/{hexd}", data))
    return files, blobs


def small_image(seed, algorithm=sha256):
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    lay = ("layer " + seed).encode()
    m = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, algorithm(config), len(config)),
        "layers": [desc(OCI_LAYER, algorithm(lay), len(lay))],
    }
    return m, {algorithm(config): config, algorithm(lay): lay}


m1, b1 = small_image("one")
files, _ = bundle([("app:v1", m1)])
files += [(f"blobs/sha256/{d.split(':')[1]}", b) for d, b in sorted(b1.items())]
write("archive", "seed-00-one-image.tar", tar_bytes(files))

m2, b2 = small_image("two", sha512)
files, _ = bundle([("long/names:sha512", m2)], algorithm=sha512)
files += [(f"blobs/sha512/{d.split(':')[1]}", b) for d, b in sorted(b2.items())]
write("archive", "seed-01-sha512-long-names.tar", tar_bytes(files))

ma, ba = small_image("amd64")
mb, bb = small_image("arm64")
idx = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
blobs = {}
for m, bl, arch in [(ma, ba, "amd64"), (mb, bb, "arm64")]:
    data = json.dumps(m, indent=1).encode()
    blobs[sha256(data)] = data
    blobs.update(bl)
    idx["manifests"].append(desc(OCI_MANIFEST, sha256(data), len(data), platform=platform("linux", arch)))
files, _ = bundle([("multi:latest", idx)], extra_index={"annotations": {"dev.mirror.bundle.omitted-blobs": sha256(b"layer arm64")}})
files += [(f"blobs/sha256/{d.split(':')[1]}", b) for d, b in sorted(blobs.items())]
write("archive", "seed-02-index-pax.tar", tar_bytes(files, fmt=tarfile.PAX_FORMAT, pax={"comment": "pax"}))

print("corpus written under", os.path.relpath(CORPUS, ROOT), file=sys.stderr)
