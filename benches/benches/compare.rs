//! `cargo bench -p mirror-benches [-- OPTIONS]`: mirror, skopeo and the raw
//! limit, side by side on two real local registries. See `--help`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mirror_benches::copier::{build_mirror, Contender, Copier, Job};
use mirror_benches::measure;
use mirror_benches::scenario::{prepare, prepare_update, Image, Prepared, Scenario};
use mirror_benches::table::Results;
use mirror_tests::fixtures::push_layout;
use mirror_tests::images::client;
use mirror_tests::{Registry, RegistryOptions, TestCa};

#[derive(Debug, Parser)]
#[command(about = "mirror against skopeo and the raw limit, measured in one run")]
struct Args {
    /// Scenarios to run (repeatable; default: all).
    #[arg(long = "scenario", value_enum)]
    scenarios: Vec<Scenario>,
    /// Phases: cold (empty target), rerun (nothing changed), update (one
    /// azureml tag gained a layer).
    #[arg(long = "phase", value_enum)]
    phases: Vec<Phase>,
    /// Contenders (repeatable; default: all).
    #[arg(long = "copier", value_enum)]
    copiers: Vec<Copier>,
    /// Measured runs of each contender per scenario and phase.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where the table is written.
    #[arg(long, default_value = "target/bench/results.md")]
    out: PathBuf,
    /// Where generated scenarios are kept between runs.
    #[arg(long, default_value = "target/bench/fixtures")]
    cache: PathBuf,
    /// An extra argument for mirror's runs (repeatable), to compare
    /// settings: `--mirror-arg=--jobs=4`. Named in the table's header.
    #[arg(long = "mirror-arg", value_name = "ARG", allow_hyphen_values = true)]
    mirror_args: Vec<String>,
    /// Also run `mirror copy` with other settings, in the same rotation as
    /// the rest (repeatable): `--variant 'jobs 4=--jobs 4'`. Its row is
    /// `mirror [jobs 4]`.
    #[arg(long = "variant", value_name = "LABEL=ARGS", value_parser = Contender::variant, allow_hyphen_values = true)]
    variants: Vec<Contender>,
    /// Both registries speak TLS (HTTP/2 is then negotiated); the raw
    /// limit speaks plain HTTP only and is left out.
    #[arg(long)]
    tls: bool,
    /// (cargo bench passes this)
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    Cold,
    Rerun,
    Update,
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    // The measuring wrapper must stay small: decide before anything else.
    if argv.get(1).map(String::as_str) == Some("measure") {
        std::process::exit(measure::measure_main(&argv[2..])?);
    }
    let runtime = tokio::runtime::Runtime::new()?;
    // The limit runs as a child process of this binary, measured like the others.
    if argv.get(1).map(String::as_str) == Some("limit") {
        let plan = serde_json::from_slice(&std::fs::read(&argv[2])?)?;
        return runtime.block_on(mirror_benches::limit::run(plan));
    }
    let mut args = Args::parse();
    if args.scenarios.is_empty() {
        args.scenarios = vec![Scenario::Azureml, Scenario::Big, Scenario::Many];
    }
    if args.phases.is_empty() {
        args.phases = vec![Phase::Cold, Phase::Rerun, Phase::Update];
    }
    if args.copiers.is_empty() {
        args.copiers = vec![
            Copier::Mirror,
            Copier::MirrorSync,
            Copier::SkopeoSync,
            Copier::SkopeoCopy,
            Copier::Limit,
        ];
    }
    if args.tls {
        args.copiers.retain(|c| *c != Copier::Limit);
    }
    let root = mirror_tests::cli::workspace_root();
    let (out, cache) = (root.join(&args.out), root.join(&args.cache));
    runtime.block_on(bench(args, out, cache))
}

async fn bench(args: Args, out: PathBuf, cache: PathBuf) -> anyhow::Result<()> {
    let mirror_bin = build_mirror()?;
    std::fs::create_dir_all(&cache)?;
    let ca = if args.tls { Some(TestCa::new()?) } else { None };
    let setup = Setup {
        mirror_bin,
        mirror_args: args.mirror_args.clone(),
        ca: ca.as_ref(),
    };
    let mut results = Results::default();
    for &scenario in &args.scenarios {
        let prepared = tokio::task::block_in_place(|| prepare(&cache, scenario))?;
        let src = setup.registry().await?;
        push_layout(&setup.client(&src.host()), &src.host(), &prepared.layout).await?;
        eprintln!(
            "{}: {} tags, {:.0} MiB unique",
            scenario.name(),
            prepared.images.len(),
            prepared.unique_bytes() as f64 / 1048576.0
        );
        for &phase in &args.phases {
            if phase == Phase::Update && scenario != Scenario::Azureml {
                continue;
            }
            let update = match phase {
                Phase::Update => Some(tokio::task::block_in_place(|| prepare_update(&cache))?),
                _ => None,
            };
            for run in 0..args.runs {
                // Alternate the order so no contender always runs on a warm cache.
                let mut order: Vec<Contender> =
                    args.copiers.iter().map(|c| Contender::plain(*c)).collect();
                order.extend(args.variants.iter().cloned());
                let n = order.len();
                order.rotate_left(run % n);
                for contender in order {
                    let sample = one(&src, &prepared, update.as_ref(), phase, &contender, &setup)
                        .await
                        .with_context(|| {
                            format!("{} {phase:?} {}", scenario.name(), contender.name())
                        })?;
                    eprintln!(
                        "  {:?} {:<12} run {}: {:.2} s wall, {:.2} s CPU, {} MiB RSS, {:.0} MiB from the source, {} requests",
                        phase,
                        contender.name(),
                        run + 1,
                        sample.wall.as_secs_f64(),
                        sample.cpu.as_secs_f64(),
                        sample.max_rss_kib / 1024,
                        sample.source_bytes as f64 / 1048576.0,
                        sample.requests
                    );
                    results.add(
                        scenario.name(),
                        &format!("{phase:?}").to_lowercase(),
                        &contender,
                        sample,
                    );
                }
            }
        }
    }
    let table = results.markdown();
    println!("{table}");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut header = machine();
    if !args.mirror_args.is_empty() {
        header += &format!(" mirror ran with `{}`.", args.mirror_args.join(" "));
    }
    if args.tls {
        header += " Both registries spoke TLS.";
    }
    std::fs::write(&out, format!("{header}\n\n{table}"))?;
    eprintln!("written to {}", out.display());
    Ok(())
}

/// One measured run on a fresh target registry, set up for the phase.
async fn one(
    src: &Registry,
    prepared: &Prepared,
    update: Option<&Prepared>,
    phase: Phase,
    contender: &Contender,
    setup: &Setup<'_>,
) -> anyhow::Result<measure::Sample> {
    let copier = contender.copier;
    let dst = setup.registry().await?;
    let work = tempfile::tempdir()?;
    let job = |images: &[Image], heads_only: bool| Job {
        source: src.host(),
        target: dst.host(),
        images: images.to_vec(),
        heads_only,
        mirror_bin: setup.mirror_bin.clone(),
        mirror_args: setup.mirror_args_for(&[&src.host(), &dst.host()], &contender.args),
        work: work.path().to_path_buf(),
    };
    let client = setup.client(&src.host());
    if phase != Phase::Cold {
        if update.is_some() {
            // The source as it was before any update.
            push_layout(&client, &src.host(), &prepared.layout).await?;
        }
        // The target as a cold copy leaves it (mirror makes it; every
        // contender's result is the same images).
        measure::run(&mut Copier::Mirror.command(&job(&prepared.images, false))?)?;
    }
    let mut images = prepared.images.clone();
    if let Some(u) = update {
        push_layout(&client, &src.host(), &u.layout).await?;
        if copier == Copier::Limit {
            // The limit moves only what is new.
            let old: std::collections::HashSet<_> = prepared
                .images
                .iter()
                .flat_map(|i| i.blobs.iter().map(|b| b.0.clone()))
                .collect();
            images = u.images.clone();
            for i in &mut images {
                i.blobs.retain(|b| !old.contains(&b.0));
            }
        }
    }
    let before = src.response_bytes("GET", "/blobs/");
    let requests = || src.access_log().len() + dst.access_log().len();
    let requests_before = requests();
    let mut sample = measure::run(&mut copier.command(&job(&images, phase == Phase::Rerun))?)?;
    sample.source_bytes = src.response_bytes("GET", "/blobs/") - before;
    sample.requests = (requests() - requests_before) as u64;
    Ok(sample)
}

/// What every run shares: the binary, its extra arguments, the CA when the
/// registries speak TLS.
struct Setup<'a> {
    mirror_bin: PathBuf,
    mirror_args: Vec<String>,
    ca: Option<&'a TestCa>,
}

impl Setup<'_> {
    async fn registry(&self) -> anyhow::Result<Registry> {
        Registry::start(RegistryOptions {
            tls: self.ca,
            ..Default::default()
        })
        .await
    }

    fn client(&self, host: &str) -> registry_client::Client {
        match self.ca {
            None => client(host, None),
            Some(ca) => registry_client::Client::new(
                registry_client::ClientConfig::builder()
                    .tls_registries([host])
                    .ca_files([ca.ca_pem_path()])
                    .build(),
            )
            .expect("client"),
        }
    }

    /// mirror's extra arguments, with the CA and TLS hosts when needed.
    fn mirror_args_for(&self, hosts: &[&str], more: &[String]) -> Vec<String> {
        let mut args = self.mirror_args.clone();
        args.extend_from_slice(more);
        if let Some(ca) = self.ca {
            args.push(format!("--ca-file={}", ca.ca_pem_path().display()));
            args.extend(hosts.iter().map(|h| format!("--tls-registry={h}")));
        }
        args
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("Machine: {cores} cores ({cpu}); two local distribution registries on loopback.")
}
