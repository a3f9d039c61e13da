//! Debian's `podman` as the real runtime that loads and pulls what mirror
//! wrote. Each [`Podman`] has a store of its own in a temporary directory
//! (the `vfs` driver, which needs no privilege or kernel feature; its own
//! root, runroot and tmpdir) and its own configuration files, `HOME` and
//! XDG directories there too, so nothing of the machine's containers setup
//! (registries, mirrors, policy, storage) takes part, and tests run in
//! parallel.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// One isolated podman: its store and configuration; removed on drop.
pub struct Podman {
    dir: tempfile::TempDir,
}

/// Accept any image: signatures are not what these tests are about.
const POLICY: &str = r#"{"default":[{"type":"insecureAcceptAnything"}]}"#;

impl Podman {
    /// A podman with an empty store of its own.
    pub fn new() -> Podman {
        let dir = tempfile::tempdir().expect("a temporary directory for podman");
        let p = Podman { dir };
        for sub in ["root", "run", "tmp", "home/.config/containers", "xdg-run"] {
            std::fs::create_dir_all(p.path(sub)).unwrap();
        }
        let write = |name: &str, text: String| std::fs::write(p.path(name), text).unwrap();
        write(
            "containers.conf",
            format!(
                "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{}\"\n",
                p.path("events.log").display()
            ),
        );
        // No search registries, mirrors or blocked hosts: every name is full.
        write(
            "registries.conf",
            "unqualified-search-registries = []\n".into(),
        );
        write(
            "storage.conf",
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                p.path("root").display(),
                p.path("run").display()
            ),
        );
        write("policy.json", POLICY.into());
        write("home/.config/containers/policy.json", POLICY.into());
        p
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `podman ARGS…` against this store, with only this store's config.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("XDG_RUNTIME_DIR", self.path("xdg-run"))
            .env("XDG_CONFIG_HOME", self.path("home/.config"))
            .env("CONTAINERS_CONF", self.path("containers.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", self.path("registries.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.path("storage.conf"))
            .arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("run"))
            .arg("--tmpdir")
            .arg(self.path("tmp"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(args);
        c
    }

    /// Run `podman ARGS…`; its output whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("running podman (./scripts/test.sh installs it): {e}"))
    }

    /// Run `podman ARGS…`, which must succeed: its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `podman load -i ARCHIVE`: what it printed.
    pub fn load(&self, archive: &Path) -> String {
        let policy = self.policy();
        self.ok(&[
            "load",
            "--signature-policy",
            &policy,
            "-i",
            archive.to_str().expect("a UTF-8 path"),
        ])
    }

    /// `podman pull --tls-verify=false [--platform P] REFERENCE` from a
    /// plain-HTTP loopback registry; its output, or its error output.
    pub fn pull(&self, reference: &str, platform: Option<&str>) -> Result<String, String> {
        let policy = self.policy();
        let mut args = vec![
            "pull",
            "--quiet",
            "--tls-verify=false",
            "--signature-policy",
            &policy,
        ];
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        args.push(reference);
        let out = self.run(&args);
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    /// `podman image inspect NAME`: the one image's JSON.
    pub fn inspect(&self, name: &str) -> Value {
        let out = self.ok(&["image", "inspect", name]);
        let mut all: Vec<Value> = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("podman image inspect {name}: {e}: {out}"));
        assert_eq!(all.len(), 1, "podman image inspect {name}: {out}");
        all.remove(0)
    }

    /// The full IDs of every image in the store.
    pub fn image_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .ok(&["images", "--no-trunc", "--quiet"])
            .lines()
            .map(|l| l.trim().trim_start_matches("sha256:").to_string())
            .filter(|l| !l.is_empty())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    fn policy(&self) -> String {
        self.path("policy.json").display().to_string()
    }
}

impl Default for Podman {
    fn default() -> Self {
        Podman::new()
    }
}

/// What `podman image inspect` shows that the source decides, as strings:
/// `Id` (the config digest's hex), `RootFS.Layers` (the diff_ids), `Os`,
/// `Architecture`, and the `RepoTags` and `RepoDigests`, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub id: String,
    pub digest: String,
    pub layers: Vec<String>,
    pub os: String,
    pub architecture: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
}

impl Inspected {
    pub fn of(v: &Value) -> Inspected {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        // The strings of a JSON array, in order (layers) or sorted (names).
        let strings = |x: &Value| -> Vec<String> {
            x.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let sorted = |x: &Value| {
            let mut l = strings(x);
            l.sort();
            l
        };
        let layers = strings(&v["RootFS"]["Layers"]);
        Inspected {
            id: s("Id"),
            digest: s("Digest"),
            layers,
            os: s("Os"),
            architecture: s("Architecture"),
            repo_tags: sorted(&v["RepoTags"]),
            repo_digests: sorted(&v["RepoDigests"]),
        }
    }
}

/// `img`'s manifest with its layer `at` made foreign: the OCI
/// non-distributable media type and `urls` (`url`), as Windows base images
/// carry them. Returns the manifest's bytes and digest.
pub fn with_foreign_layer(
    img: &crate::fixtures::GeneratedImage,
    at: usize,
    url: &str,
) -> (bytes::Bytes, registry_client::Digest) {
    let mut m: Value = serde_json::from_slice(&img.manifest).expect("a fixture manifest");
    let layer = &mut m["layers"][at];
    layer["mediaType"] = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".into();
    layer["urls"] = serde_json::json!([url]);
    let bytes = bytes::Bytes::from(serde_json::to_vec_pretty(&m).unwrap());
    let digest = registry_client::Digest::sha256_of(&bytes);
    (bytes, digest)
}
