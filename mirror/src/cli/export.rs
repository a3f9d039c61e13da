//! `mirror export`: images into one bundle (an OCI archive or layout) to
//! carry across an air gap, from references, a sync config or the AzureML
//! preset; `--since` leaves out what an earlier bundle carried.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Args;

use super::run::{exit_code, open_state, run_jobs, Show};
use super::{exit, OutputFormat, ProgressMode, RegistryArgs, StateArgs};
use crate::azureml::images::{source_tag, RUNTIME_REPOSITORIES};
use crate::azureml::preset::Location;
use crate::endpoint::Endpoint;
use crate::plan::Planner;
use crate::platform::PlatformFilter;
use crate::sync::plan::{expand, State, Stores};
use crate::transfer::CopyOptions;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Images to export: `HOST/REPO:TAG` (or `oci:DIR:NAME`).
    #[arg(value_name = "IMAGE")]
    images: Vec<String>,
    /// Read images from a file: one per line; `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// Export the images a sync config selects (its sources; its targets
    /// are ignored). Its registry settings and credentials are used, and
    /// its entries' platforms when they agree (--platform overrides).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Export the six AzureML runtime images of this region (`{region}-stable`).
    #[arg(long, value_name = "REGION")]
    azureml_region: Option<String>,
    /// With --azureml-region: where the runtime images are read
    /// (default mcr.microsoft.com/azureml/runtime).
    #[arg(long, value_name = "HOST[/PREFIX]", requires = "azureml_region")]
    source: Option<String>,
    /// The bundle: `oci-archive:PATH`, a plain PATH (an archive too) or
    /// `oci:DIR` (a layout directory).
    #[arg(long, value_name = "BUNDLE")]
    to: String,
    /// Leave out the blobs the receiver already holds: an earlier bundle
    /// (archive or layout), or the `BUNDLE.blobs` list export writes beside
    /// each archive. The new bundle lists what it left out.
    #[arg(long, value_name = "OLD_BUNDLE_OR_LIST")]
    since: Option<PathBuf>,
    /// Requests and blob streams in flight at once, across all images.
    #[arg(long, short = 'j', default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    jobs: u16,
    /// Keep only these platforms of a multi-platform index (repeatable);
    /// this writes a new index, so its digest changes.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]")]
    platforms: Vec<PlatformFilter>,
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    state: StateArgs,
}

/// Where the bundle goes: an archive or a layout directory.
#[derive(Debug)]
struct BundleTarget {
    path: PathBuf,
    archive: bool,
}

impl BundleTarget {
    /// The endpoint of one image in the bundle.
    fn image(&self, name: Option<String>) -> Endpoint {
        let path = self.path.clone();
        if self.archive {
            Endpoint::Archive { path, name }
        } else {
            Endpoint::Layout { path, name }
        }
    }
}

/// `oci-archive:PATH`, `oci:DIR` or a plain path (an archive), without a
/// name: a bundle holds many images, each named after its source.
fn bundle_target(to: &str) -> Result<BundleTarget, String> {
    let endpoint = if to.starts_with("oci:") || to.starts_with("oci-archive:") {
        Endpoint::parse(to).map_err(|e| e.to_string())?
    } else {
        Endpoint::Archive {
            path: PathBuf::from(to),
            name: None,
        }
    };
    if endpoint.tag().is_some() {
        return Err(format!(
            "--to {to}: a bundle names each image after its source; give the path only"
        ));
    }
    match endpoint {
        Endpoint::Archive { path, .. } => Ok(BundleTarget {
            path,
            archive: true,
        }),
        Endpoint::Layout { path, .. } => Ok(BundleTarget {
            path,
            archive: false,
        }),
        Endpoint::Registry { .. } => Err(format!("--to {to}: a bundle is a file or directory")),
    }
}

/// The AzureML runtime images of `region` under `source` (`HOST[/PREFIX]`).
fn azureml_images(region: &str, source: Option<&str>) -> Result<Vec<String>, String> {
    let region = crate::azureml::regions::check(region).map_err(|e| e.to_string())?;
    let source = match source {
        Some(s) => Location::parse(s).map_err(|e| format!("--source {e}"))?,
        None => Location::mcr(),
    };
    RUNTIME_REPOSITORIES
        .iter()
        .map(|r| Ok(format!("{}:{}", source.repository(r)?, source_tag(region))))
        .collect()
}

/// The images from the arguments, the file and the preset, parsed.
fn listed_images(args: &ExportArgs) -> Result<Vec<Endpoint>, String> {
    let mut words: Vec<(String, String)> = args
        .images
        .iter()
        .map(|w| (w.clone(), format!("argument {w:?}")))
        .collect();
    if let Some(path) = &args.from_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if !line.is_empty() {
                words.push((line.to_string(), format!("{}:{}", path.display(), n + 1)));
            }
        }
    }
    if let Some(region) = &args.azureml_region {
        for w in azureml_images(region, args.source.as_deref())? {
            words.push((w, "--azureml-region".into()));
        }
    }
    words
        .into_iter()
        .map(|(w, at)| Endpoint::parse(&w).map_err(|e| format!("{at}: {e}")))
        .collect()
}

pub async fn run(args: ExportArgs) -> i32 {
    let target = match bundle_target(&args.to) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    if args.since.is_some() && !target.archive {
        eprintln!("error: --since writes a delta archive; give --to oci-archive:PATH or PATH");
        return exit::USAGE;
    }
    let mut sources = match listed_images(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    // A config brings its own registry settings and credentials.
    let config = match &args.config {
        Some(path) => match crate::sync::config::load(path) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        },
        None => None,
    };
    let client = match &config {
        Some(c) => crate::sync::client(c).map_err(anyhow::Error::from),
        None => args.registry.client(args.jobs),
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::USAGE;
        }
    };
    let mut planning_failed = false;
    // The platform filter is one for the whole run: --platform, else the
    // config's entries' (when they agree).
    let mut config_platforms: Option<Vec<PlatformFilter>> = None;
    if let Some(config) = &config {
        let stores = Stores::new(client.clone(), config, false);
        for item in expand(config, &stores, None, args.jobs as usize).await {
            if let State::Failed { error, .. } = &item.state {
                eprintln!("error: {}: {error}", item.source_label);
                planning_failed = true;
                continue;
            }
            match &config_platforms {
                None => config_platforms = Some(item.platforms.clone()),
                Some(p) if *p != item.platforms && args.platforms.is_empty() => {
                    eprintln!(
                        "error: the config's entries keep different platforms ({} for {}); export them into separate bundles, or give --platform",
                        describe_platforms(&item.platforms),
                        item.source_label
                    );
                    return exit::USAGE;
                }
                Some(_) => {}
            }
            match Endpoint::parse(&item.source_label) {
                Ok(e) => sources.push(e),
                Err(e) => {
                    eprintln!("error: {e}");
                    planning_failed = true;
                }
            }
        }
    }
    if sources.is_empty() {
        eprintln!(
            "error: nothing to export: give images, --from-file, --config or --azureml-region"
        );
        return if planning_failed {
            exit::FAILED
        } else {
            exit::USAGE
        };
    }
    let state = match open_state(&args.state) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut planner = Planner::new(client)
        .with_uploads(args.registry.uploads())
        .with_sessions(state.uploads().clone());
    if let Some(since) = &args.since {
        match crate::delta::load(since).await {
            Ok(held) => planner = planner.with_leave_out(held),
            Err(e) => {
                eprintln!("error: --since {}: {e}", since.display());
                return exit::USAGE;
            }
        }
    }
    // One name per image in the bundle: two sources with one name would
    // overwrite each other.
    let mut named: HashMap<String, String> = HashMap::new();
    let mut jobs = Vec::new();
    for source in &sources {
        let name = source.layout_name();
        if let Some(n) = &name {
            let label = source.to_string();
            if let Some(other) = named.insert(n.clone(), label.clone()) {
                if other == label {
                    continue;
                }
                eprintln!("error: {other} and {label} would both be named {n:?} in the bundle");
                return exit::USAGE;
            }
        }
        match planner.copy(source, &target.image(name)) {
            Ok(j) => jobs.push(j),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        }
    }
    let platforms = if args.platforms.is_empty() {
        config_platforms.unwrap_or_default()
    } else {
        args.platforms.clone()
    };
    let options = CopyOptions {
        jobs: args.jobs as usize,
        platforms,
        spools: Some(state.spools().clone()),
        ..CopyOptions::default()
    };
    let show = Show {
        progress: args.progress,
        output: args.output,
    };
    let report = match run_jobs(jobs, options, &show, &state).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut code = exit_code(&report);
    if report.succeeded > 0 {
        // The list of what the receiver holds after importing this bundle:
        // next week's --since.
        for path in planner.archive_paths() {
            let held = match crate::delta::receiver_holds(path).await {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("error: listing the blobs of {}: {e}", path.display());
                    code = code.max(exit::FAILED);
                    continue;
                }
            };
            match crate::delta::write_list(path, &held) {
                Ok(list) => {
                    if args.progress != ProgressMode::None {
                        eprintln!("wrote {} (for the next export's --since)", list.display());
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    code = code.max(exit::FAILED);
                }
            }
        }
    }
    if planning_failed {
        code = code.max(exit::FAILED);
    }
    code
}

fn describe_platforms(p: &[PlatformFilter]) -> String {
    if p.is_empty() {
        "all".into()
    } else {
        p.iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_targets_and_azureml_sources() {
        assert!(bundle_target("week1.tar").unwrap().archive);
        assert!(bundle_target("oci-archive:week1.tar").unwrap().archive);
        assert!(!bundle_target("oci:dir").unwrap().archive);
        assert!(bundle_target("oci-archive:b.tar:app:v1")
            .unwrap_err()
            .contains("path only"));
        let images = azureml_images("eastus", None).unwrap();
        assert_eq!(images.len(), 6);
        assert_eq!(
            images[0],
            "mcr.microsoft.com/azureml/runtime/boot/vm-bootstrapper/binimage/linux:eastus-stable"
        );
        let images = azureml_images("eastus", Some("127.0.0.1:5000")).unwrap();
        assert_eq!(
            images[2],
            "127.0.0.1:5000/cap/lifecycler/installed:eastus-stable"
        );
        assert!(azureml_images("moon", None).is_err());
    }
}
